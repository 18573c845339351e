//! Front-end throughput: parses and checks a clean program replicated 1×, 10× and 100× (names
//! suffixed per copy) and prints MB/s, so near-linear scaling is visible. No assertions.

use std::time::Instant;

/// One self-contained block of declarations; copy `k` suffixes every declared name with `_k`.
fn copy(k: usize) -> String {
    format!(
        r#"
event PumpReading_{k}:
    pump: str
    rpm: int
    inlet_temp: float

connector Plant_{k} = mqtt(host: "broker.local", port: 1883, client_id: "vp-{k}")
context crunch_{k} (cores: [2, 3])
const LIMIT_{k} = 64

fn escape_time_{k}(cx: float, cy: float, limit: int) -> int:
    var x = 0.0
    var y = 0.0
    var n = 0
    while n < limit and x * x + y * y <= 4.0:
        let t = x * x - y * y + cx
        y := 2.0 * x * y + cy
        x := t
        n := n + 1
    return n

fn render_row_{k}(row: int, width: int):
    for col in 0..width:
        let it = escape_time_{k}(-2.0 + col * 0.01, -1.0 + row * 0.01, LIMIT_{k})
        if it == LIMIT_{k}:
            continue
        emit Cell(row: row, col: col, steps: it, label: "c" + to_string(col).upper())

stream Hot_{k} = PumpReading_{k} as r .where(r.inlet_temp > 80.0 and not (r.pump in ["P0", "P9"]))
    .emit(context: crunch_{k}, pump: pump, temp: inlet_temp, level: "high")
stream Busy_{k} = Hot_{k} .context(crunch_{k}) .where(temp > 90.5)
    .select(pump, temp)
    .to(Plant_{k}, topic: "plant/alerts")
stream Rows_{k} = PumpReading_{k} .process(render_row_{k}(rpm % 10, 300))
"#
    )
}

fn main() {
    let unit: Vec<String> = (0..100).map(copy).collect();
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>10}",
        "copies", "bytes", "parse MB/s", "check MB/s", "diags"
    );
    for n in [1usize, 10, 100] {
        let src: String = unit[..n].concat();
        let reps = (2_000 / n).max(3);
        let t = Instant::now();
        let mut diags = 0;
        for _ in 0..reps {
            diags = varpulis_vpl::parse(&src).1.len();
        }
        let parse_s = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        let mut errors = 0;
        for _ in 0..reps {
            errors = match varpulis_vpl::check(&src, &Default::default()) {
                Ok(_) => 0,
                Err(e) => e.len(),
            };
        }
        let check_s = t.elapsed().as_secs_f64() / reps as f64;
        let mb = src.len() as f64 / 1e6;
        println!(
            "{n:>8} {:>10} {:>12.1} {:>12.1} {:>10}",
            src.len(),
            mb / parse_s,
            mb / check_s,
            errors.max(diags)
        );
    }
}
