//! VPL runtime throughput (harness = false): prints figures, asserts nothing.
//!
//! `cargo bench --bench vpl_throughput [-- <tier1 events> [<tier2 events>]]` (defaults 1,000,000
//! and 10,000,000; 0 skips a tier). Measures, single-threaded:
//! * filter + emit over in-memory events, and a hand-written Rust loop doing the same filter and
//!   building the same output events (the baseline ratio); filter + select; the tutorial's
//!   Mandelbrot `.process` pipeline (pixels/s);
//! * Tier 2, over events generated on the fly (generation included, also timed alone): a tumbling
//!   1s window with `avg` per key over 1,000 keys, a partitioned 3-step sequence with `.within`,
//!   and a windowed join, each next to a hand-written Rust equivalent in the same process, with
//!   wall and CPU rates and the peak RSS of each workload (`VmHWM`, reset between workloads
//!   through `/proc/self/clear_refs`);
//! * Tier 3 (third argument, default 10,000,000): the same windowed average behind
//!   `.watermark(out_of_order: 100ms) .allowed_lateness(200ms)` over events arriving out of order,
//!   and a named pattern `SEQ(Login, Browse+, NOT Logout, Buy)` within 5s partitioned over 1,000
//!   users, each next to a hand-written equivalent; peak RSS is sampled at 10% and at 100% of the
//!   events to show that memory stays flat.
//!
//! `VPL_THROUGHPUT_ONLY=window,sequence,join,watermark,pattern` (any subset) runs only the named
//! Tier 2/Tier 3 workloads, e.g. to profile one of them.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use varpulis_runtime::{Engine, EngineOptions, Event, Value};

const FILTER_EMIT: &str =
    "stream Hot = Reading .where(temp > 80.0) .emit(sensor: sensor, temp: temp)";
const FILTER_SELECT: &str = "stream Hot = Reading .where(temp > 80.0) .select(sensor, temp)";
const MANDELBROT: &str = r#"
fn mandelbrot(cx: float, cy: float, max_iter: int) -> int:
    var zr = 0.0
    var zi = 0.0
    var i = 0
    while i < max_iter:
        let r2 = zr * zr
        let i2 = zi * zi
        if r2 + i2 > 4.0:
            return i
        zi := 2.0 * zr * zi + cy
        zr := r2 - i2 + cx
        i := i + 1
    return max_iter

fn compute_tile(x_off: int, y_off: int, size: int, max_iter: int):
    for px in 0..size:
        for py in 0..size:
            let cx = -2.0 + (x_off + px) * 3.0 / 1000.0
            let cy = -1.5 + (y_off + py) * 3.0 / 1000.0
            let iters = mandelbrot(cx, cy, max_iter)
            emit Pixel(x: x_off + px, y: y_off + py, iterations: iters, diverged: iters < max_iter)

stream Tiles = ComputeTile .process(compute_tile(x_off, y_off, 250, 256))
"#;

fn readings(n: usize) -> Vec<Event> {
    let sensors: Vec<Arc<str>> = (0..100).map(|i| Arc::from(format!("s{i}"))).collect();
    let (k_sensor, k_temp, k_seq): (Arc<str>, Arc<str>, Arc<str>) =
        (Arc::from("sensor"), Arc::from("temp"), Arc::from("seq"));
    (0..n)
        .map(|i| {
            // Deterministic pseudo-random temperatures in [0, 100): about 20 % pass the filter.
            let temp = ((i as u64).wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
            Event::new(
                "Reading",
                i as i64 * 1_000_000,
                vec![
                    (k_sensor.clone(), Value::Str(sensors[i % 100].clone())),
                    (k_temp.clone(), Value::Float(temp)),
                    (k_seq.clone(), Value::Int(i as i64)),
                ],
            )
        })
        .collect()
}

fn run_engine(src: &str, events: &[Event]) -> (f64, u64) {
    let mut engine = match Engine::compile(src, &EngineOptions::default()) {
        Ok(e) => e,
        Err(e) => panic!("bench program does not compile:\n{e}"),
    };
    let mut out = Vec::with_capacity(16);
    let mut produced = 0u64;
    let start = Instant::now();
    for e in events {
        out.clear();
        if engine.process(e, &mut out).is_err() {
            panic!("engine fault");
        }
        produced += out.len() as u64;
        black_box(&out);
    }
    (start.elapsed().as_secs_f64(), produced)
}

/// The same filter + emit written by hand: find fields by name, compare, build the output event.
fn run_baseline(events: &[Event]) -> (f64, u64) {
    let ty: Arc<str> = Arc::from("Hot");
    let (k_sensor, k_temp): (Arc<str>, Arc<str>) = (Arc::from("sensor"), Arc::from("temp"));
    let mut out: Vec<Event> = Vec::with_capacity(16);
    let mut produced = 0u64;
    let start = Instant::now();
    for e in events {
        out.clear();
        let temp = e.field("temp");
        if matches!(temp, Some(Value::Float(t)) if *t > 80.0) {
            let sensor = e.field("sensor").cloned().unwrap_or_default();
            let fields = vec![
                (k_sensor.clone(), sensor),
                (k_temp.clone(), temp.cloned().unwrap_or_default()),
            ];
            out.push(Event {
                event_type: ty.clone(),
                timestamp_ns: e.timestamp_ns,
                fields: Arc::new(fields),
            });
        }
        produced += out.len() as u64;
        black_box(&out);
    }
    (start.elapsed().as_secs_f64(), produced)
}

pub fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().map_or(1_000_000, |n| *n as usize);
    let t2_n = args.get(1).copied().unwrap_or(10_000_000);
    let t3_n = args.get(2).copied().unwrap_or(10_000_000);
    // Tier 2 first: its peak-RSS figures must not include the Tier 1 event vectors, whose
    // memory the allocator keeps after they are dropped. A count of 0 skips a tier.
    if t2_n > 0 {
        tier2::run_all(t2_n);
    }
    if t3_n > 0 {
        tier2::run_tier3(t3_n);
    }
    if n > 0 {
        tier1(n);
    }
}

fn tier1(n: usize) {
    let events = readings(n);
    println!("vpl_throughput: {n} events, single thread");

    let (base_s, base_out) = run_baseline(&events);
    let (fe_s, fe_out) = run_engine(FILTER_EMIT, &events);
    assert_eq!(base_out, fe_out, "engine and baseline disagree");
    let (fs_s, _) = run_engine(FILTER_SELECT, &events);
    let rate = |s: f64| n as f64 / s;
    println!(
        "  baseline Rust loop   : {:>12.0} events/s ({} outputs)",
        rate(base_s),
        base_out
    );
    println!(
        "  filter + emit        : {:>12.0} events/s ({} outputs)",
        rate(fe_s),
        fe_out
    );
    println!("  filter + select      : {:>12.0} events/s", rate(fs_s));
    println!(
        "  engine / baseline    : {:>12.2} (filter + emit time ratio: {:.2}x slower)",
        base_s / fe_s,
        fe_s / base_s
    );

    let tiles: Vec<Event> = (0..4)
        .map(|i| {
            let fields = vec![
                (Arc::from("x_off"), Value::Int((i % 4) * 250)),
                (Arc::from("y_off"), Value::Int(250)),
            ];
            Event::new("ComputeTile", 0, fields)
        })
        .collect();
    let (mb_s, pixels) = run_engine(MANDELBROT, &tiles);
    println!(
        "  mandelbrot .process  : {:>12.0} pixels/s ({} pixels, 4 tiles of 250x250, max_iter 256, {:.2}s)",
        pixels as f64 / mb_s,
        pixels,
        mb_s
    );
}

/// Tier 2 workloads: windowed aggregate, sequence and join, with baselines and peak RSS.
mod tier2 {
    use super::black_box;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Instant;
    use varpulis_runtime::{Engine, EngineOptions, Event, Value};

    /// 1,000 keys; 100,000 events per second of event time, so each 1s window holds 100 events
    /// per key.
    const KEYS: u64 = 1_000;
    const TICK_NS: i64 = 10_000;

    const WINDOWED_AVG: &str = "stream Stats = Reading .partition_by(sensor) .window(1s) \
        .aggregate(n: count(), mean: avg(temp)) .emit()";
    const SEQUENCE: &str =
        "stream Flow = Login as l -> Browse as b -> Buy where amount > 50.0 as p \
        .partition_by(user) .within(5s) .emit(user: l.user, page: b.page, amount: p.amount)";
    const JOIN: &str = "stream Paid = join(Order, Payment) .on(Order.id == Payment.order_id) \
        .window(1s) .emit(id: Order.id, item: Order.item, amount: Payment.amount)";

    fn vm_kib(field: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Resets the peak RSS (`VmHWM`) to the current RSS (Linux `clear_refs` value 5).
    fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    /// User + system CPU time of this process in seconds (`/proc/self/stat`, 100 Hz ticks).
    fn cpu_secs() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        Some((utime + stime) / 100.0)
    }

    /// Generates the i-th event of a workload.
    struct Gen {
        names: Vec<(&'static str, Arc<str>)>,
        keys: Vec<Arc<str>>,
        pages: Vec<Arc<str>>,
    }

    impl Gen {
        fn new() -> Gen {
            let names = [
                "Reading", "sensor", "temp", "Login", "Browse", "Buy", "user", "page", "amount",
                "Order", "Payment", "id", "order_id", "item", "Logout",
            ]
            .into_iter()
            .map(|n| (n, Arc::from(n)))
            .collect();
            Gen {
                names,
                keys: (0..KEYS).map(|i| Arc::from(format!("k{i}"))).collect(),
                pages: (0..7).map(|i| Arc::from(format!("/p/{i}"))).collect(),
            }
        }

        /// The generator's shared copy of `name` (as a decoder interns field names). A linear scan
        /// of a few short names is cheaper than hashing them, which keeps the generator's share
        /// of every workload's figures small.
        fn n(&self, name: &str) -> Arc<str> {
            self.names
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| Arc::from(name))
        }

        fn key(&self, i: u64) -> Value {
            Value::Str(self.keys[(i % KEYS) as usize].clone())
        }

        fn reading(&self, i: u64) -> Event {
            let temp = (i.wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
            Event {
                event_type: self.n("Reading"),
                timestamp_ns: i as i64 * TICK_NS,
                fields: Arc::new(vec![
                    (self.n("sensor"), self.key(i)),
                    (self.n("temp"), Value::Float(temp)),
                ]),
            }
        }

        /// Login, Browse, Buy for one user after another (1,000 users round robin); about half
        /// the purchases pass `amount > 50.0`, so failed runs overlap with the next login's.
        fn click(&self, i: u64) -> Event {
            let user = self.key(i / 3);
            let (ty, extra) = match i % 3 {
                0 => ("Login", None),
                1 => (
                    "Browse",
                    Some((
                        self.n("page"),
                        Value::Str(self.pages[(i % 7) as usize].clone()),
                    )),
                ),
                _ => {
                    let amount = ((i / 3).wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
                    ("Buy", Some((self.n("amount"), Value::Float(amount))))
                }
            };
            let mut fields = vec![(self.n("user"), user)];
            fields.extend(extra);
            Event {
                event_type: self.n(ty),
                timestamp_ns: i as i64 * TICK_NS,
                fields: Arc::new(fields),
            }
        }

        /// An order, then its payment 500 events (5 ms) later; ids cycle over 1,000 keys.
        fn trade(&self, i: u64) -> Event {
            let half = i / 2;
            let ts = i as i64 * TICK_NS;
            if i.is_multiple_of(2) {
                Event {
                    event_type: self.n("Order"),
                    timestamp_ns: ts,
                    fields: Arc::new(vec![
                        (self.n("id"), self.key(half)),
                        (
                            self.n("item"),
                            Value::Str(self.pages[(half % 7) as usize].clone()),
                        ),
                    ]),
                }
            } else {
                Event {
                    event_type: self.n("Payment"),
                    timestamp_ns: ts,
                    fields: Arc::new(vec![
                        (self.n("order_id"), self.key(half.saturating_sub(250))),
                        (self.n("amount"), Value::Float((half % 100) as f64)),
                    ]),
                }
            }
        }
    }

    struct Figures {
        secs: f64,
        cpu: Option<f64>,
        produced: u64,
        peak_kib: Option<u64>,
    }

    fn measure(n: u64, mut step: impl FnMut(u64) -> u64, finish: impl FnOnce() -> u64) -> Figures {
        let peak_reset = reset_peak();
        let cpu0 = cpu_secs();
        let start = Instant::now();
        let mut produced = 0;
        for i in 0..n {
            produced += step(i);
        }
        produced += finish();
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_secs()
            .zip(cpu0)
            .map(|(b, a)| b - a)
            .filter(|c| *c > 0.0);
        Figures {
            secs,
            cpu,
            produced,
            peak_kib: if peak_reset { vm_kib("VmHWM:") } else { None },
        }
    }

    fn report(name: &str, n: u64, engine: &Figures, baseline: &Figures, target: Option<f64>) {
        let rate = |f: &Figures| n as f64 / f.secs;
        let cpu_rate = |f: &Figures| f.cpu.map(|c| n as f64 / c);
        let fmt_opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        let kib = |f: &Figures| f.peak_kib.map_or("n/a".to_string(), |k| format!("{k} KiB"));
        println!("  {name}");
        println!(
            "    engine   : {:>10.0} events/s wall, {:>10} events/CPU-s, {} outputs, peak RSS {}",
            rate(engine),
            fmt_opt(cpu_rate(engine)),
            engine.produced,
            kib(engine)
        );
        println!(
            "    baseline : {:>10.0} events/s wall, {:>10} events/CPU-s, {} outputs, peak RSS {}",
            rate(baseline),
            fmt_opt(cpu_rate(baseline)),
            baseline.produced,
            kib(baseline)
        );
        let best = cpu_rate(engine).unwrap_or_else(|| rate(engine));
        println!(
            "    engine / baseline time: {:.2}x{}",
            engine.secs / baseline.secs,
            target.map_or(String::new(), |t| format!(
                "; target {t:.0} events/s per CPU-s: {}",
                if best >= t { "met" } else { "MISSED" }
            ))
        );
    }

    /// Measures the workload's event generation alone (up to 2 M events) and prints the
    /// engine's CPU per event without it: the generator runs inside every timed loop, so this
    /// is the figure that isolates the engine.
    fn engine_share(n: u64, engine: &Figures, gen: impl Fn(u64) -> Event) {
        let gen_n = n.min(2_000_000);
        let alone = measure(
            gen_n,
            |i| {
                black_box(gen(i));
                0
            },
            || 0,
        );
        let (Some(gen_cpu), Some(cpu)) = (alone.cpu, engine.cpu) else {
            return;
        };
        let gen_ns = gen_cpu * 1e9 / gen_n as f64;
        let engine_ns = cpu * 1e9 / n as f64 - gen_ns;
        println!(
            "    generation alone {gen_ns:.0} ns/event; engine without it {engine_ns:.0} ns/event ({:.0} events/CPU-s)",
            if engine_ns > 0.0 { 1e9 / engine_ns } else { f64::INFINITY }
        );
    }

    /// Hand-written tumbling 1s count/avg per key.
    fn windowed_baseline(g: &Gen, n: u64) -> Figures {
        let mut acc: HashMap<Arc<str>, (u64, f64)> = HashMap::new();
        let mut window = 0i64;
        let mut out: Vec<(Arc<str>, u64, f64)> = Vec::new();
        let cell = std::cell::RefCell::new((&mut acc, &mut window, &mut out));
        measure(
            n,
            |i| {
                let e = g.reading(i);
                let mut st = cell.borrow_mut();
                let (acc, window, out) = &mut *st;
                out.clear();
                let w = e.timestamp_ns.div_euclid(1_000_000_000);
                if w != **window {
                    out.extend(acc.drain().map(|(k, (c, s))| (k, c, s / c as f64)));
                    **window = w;
                }
                if let (Some(Value::Str(k)), Some(Value::Float(t))) =
                    (e.field("sensor"), e.field("temp"))
                {
                    let slot = acc.entry(k.clone()).or_insert((0, 0.0));
                    slot.0 += 1;
                    slot.1 += t;
                }
                black_box(&out);
                out.len() as u64
            },
            || cell.borrow().0.len() as u64,
        )
    }

    /// Hand-written per-user Login -> Browse -> Buy state machine (no `within` bookkeeping).
    fn sequence_baseline(g: &Gen, n: u64) -> Figures {
        let mut runs: HashMap<Arc<str>, Vec<(i64, u8)>> = HashMap::new();
        measure(
            n,
            |i| {
                let e = g.click(i);
                let Some(Value::Str(user)) = e.field("user") else {
                    return 0;
                };
                let rs = runs.entry(user.clone()).or_default();
                rs.retain(|(start, _)| e.timestamp_ns - start <= 5_000_000_000);
                let mut matched = 0;
                match &*e.event_type {
                    "Login" => rs.push((e.timestamp_ns, 1)),
                    "Browse" => rs.iter_mut().filter(|r| r.1 == 1).for_each(|r| r.1 = 2),
                    _ => {
                        if matches!(e.field("amount"), Some(Value::Float(a)) if *a > 50.0) {
                            let before = rs.len();
                            rs.retain(|r| r.1 != 2);
                            matched = (before - rs.len()) as u64;
                        }
                    }
                }
                black_box(&rs);
                matched
            },
            || 0,
        )
    }

    /// Hand-written latest-per-key join of orders and payments within 1s.
    fn join_baseline(g: &Gen, n: u64) -> Figures {
        let mut orders: HashMap<Arc<str>, Event> = HashMap::new();
        let mut payments: HashMap<Arc<str>, Event> = HashMap::new();
        measure(
            n,
            |i| {
                let e = g.trade(i);
                let is_order = &*e.event_type == "Order";
                let key = if is_order { "id" } else { "order_id" };
                let Some(Value::Str(k)) = e.field(key).cloned() else {
                    return 0;
                };
                let (mine, other) = if is_order {
                    (&mut orders, &payments)
                } else {
                    (&mut payments, &orders)
                };
                let hit = other
                    .get(&k)
                    .is_some_and(|p| p.timestamp_ns >= e.timestamp_ns - 1_000_000_000);
                mine.insert(k, e);
                u64::from(hit)
            },
            || 0,
        )
    }

    /// Windowed average per key behind a watermark, events arriving up to 60 ms out of order.
    const WATERMARKED_AVG: &str = "stream Stats = Reading .watermark(out_of_order: 100ms) \
        .allowed_lateness(200ms) .partition_by(sensor) .window(1s) \
        .aggregate(n: count(), mean: avg(temp)) .emit()";
    /// A named pattern: SEQ of 3 items with a Kleene `+` and a NOT, 1,000 users.
    const PATTERN: &str = "pattern Checkout = SEQ(Login as l, Browse+ as b, NOT Logout, \
        Buy where amount > 50.0 as p) within 5s partition by user\n\
        stream Sale = Checkout .emit(user: l.user, page: b.page, amount: p.amount)";

    impl Gen {
        /// A reading whose time jumps back by up to 60 ms for one event in seven.
        fn late_reading(&self, i: u64) -> Event {
            let mut e = self.reading(i);
            if i % 7 == 3 {
                e.timestamp_ns = (e.timestamp_ns - 60_000_000).max(0);
            }
            e
        }

        /// Per user (1,000, round robin), cycles of Login, Browse, Browse, Browse (Logout for one
        /// user in eight), Buy (about half with `amount > 50`).
        fn shop(&self, i: u64) -> Event {
            let user = self.key(i);
            let phase = (i / KEYS) % 5;
            let u = i % KEYS;
            let (ty, extra) = match phase {
                0 => ("Login", None),
                1 | 2 => (
                    "Browse",
                    Some((
                        self.n("page"),
                        Value::Str(self.pages[(i % 7) as usize].clone()),
                    )),
                ),
                3 if u.is_multiple_of(8) => ("Logout", None),
                3 => (
                    "Browse",
                    Some((
                        self.n("page"),
                        Value::Str(self.pages[(i % 5) as usize].clone()),
                    )),
                ),
                _ => {
                    let amount = ((i / 3).wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
                    ("Buy", Some((self.n("amount"), Value::Float(amount))))
                }
            };
            let mut fields = vec![(self.n("user"), user)];
            fields.extend(extra);
            Event {
                event_type: self.n(ty),
                timestamp_ns: i as i64 * TICK_NS,
                fields: Arc::new(fields),
            }
        }
    }

    /// Hand-written watermarked tumbling window per key: buckets by window start, fired when
    /// the watermark passes their end, late events (window fired more than 200 ms ago) dropped.
    fn watermarked_baseline(g: &Gen, n: u64) -> Figures {
        let mut buckets: std::collections::BTreeMap<i64, HashMap<Arc<str>, (u64, f64)>> =
            Default::default();
        let mut max_ts = 0i64;
        let mut out: Vec<(Arc<str>, u64, f64)> = Vec::new();
        measure(
            n,
            |i| {
                let e = g.late_reading(i);
                out.clear();
                max_ts = max_ts.max(e.timestamp_ns);
                let wm = max_ts - 100_000_000;
                let start = e.timestamp_ns.div_euclid(1_000_000_000) * 1_000_000_000;
                if start + 1_000_000_000 + 200_000_000 > wm {
                    if let (Some(Value::Str(k)), Some(Value::Float(t))) =
                        (e.field("sensor"), e.field("temp"))
                    {
                        let slot = buckets
                            .entry(start)
                            .or_default()
                            .entry(k.clone())
                            .or_insert((0, 0.0));
                        slot.0 += 1;
                        slot.1 += t;
                    }
                }
                while let Some(entry) = buckets.first_entry() {
                    if *entry.key() + 1_000_000_000 > wm {
                        break;
                    }
                    out.extend(
                        entry
                            .remove()
                            .into_iter()
                            .map(|(k, (c, s))| (k, c, s / c as f64)),
                    );
                }
                black_box(&out);
                out.len() as u64
            },
            || 0,
        )
    }

    /// Hand-written Checkout state machine: per user, runs (start, saw browse) killed by Logout
    /// once a Browse was seen, completed by a Buy over 50.
    fn pattern_baseline(g: &Gen, n: u64) -> Figures {
        let mut runs: HashMap<Arc<str>, Vec<(i64, bool)>> = HashMap::new();
        measure(
            n,
            |i| {
                let e = g.shop(i);
                let Some(Value::Str(user)) = e.field("user") else {
                    return 0;
                };
                let rs = runs.entry(user.clone()).or_default();
                rs.retain(|(start, _)| e.timestamp_ns - start <= 5_000_000_000);
                let mut matched = 0;
                match &*e.event_type {
                    "Login" => rs.push((e.timestamp_ns, false)),
                    "Browse" => rs.iter_mut().for_each(|r| r.1 = true),
                    "Logout" => rs.retain(|r| !r.1),
                    _ => {
                        if matches!(e.field("amount"), Some(Value::Float(a)) if *a > 50.0) {
                            let before = rs.len();
                            rs.retain(|r| !r.1);
                            matched = (before - rs.len()) as u64;
                        }
                    }
                }
                black_box(&rs);
                matched
            },
            || 0,
        )
    }

    /// Runs `src` over `n` events, reporting the peak RSS after 10% of them as well (flat memory
    /// means the two peaks are close).
    fn engine_run_flat(src: &str, n: u64, gen: impl Fn(u64) -> Event) -> (Figures, Option<u64>) {
        let mut engine = match Engine::compile(src, &EngineOptions::default()) {
            Ok(e) => e,
            Err(e) => panic!("bench program does not compile:\n{e}"),
        };
        let mut out = Vec::with_capacity(1024);
        let tenth = n / 10;
        let mut early_peak = None;
        let cell = std::cell::RefCell::new(&mut engine);
        let figures = measure(
            n,
            |i| {
                if i == tenth {
                    early_peak = vm_kib("VmHWM:");
                }
                out.clear();
                if cell.borrow_mut().process(&gen(i), &mut out).is_err() {
                    panic!("engine fault");
                }
                black_box(&out);
                out.len() as u64
            },
            || {
                let mut rest = Vec::new();
                cell.borrow_mut().finish(&mut rest);
                rest.len() as u64
            },
        );
        (figures, early_peak)
    }

    /// Prints the peak RSS after 10% of the events and after all of them (flat memory: equal).
    fn flat_line(early: Option<u64>, f: &Figures) {
        println!(
            "    peak RSS after 10% of the events: {}, after all: {}",
            early.map_or("n/a".to_string(), |k| format!("{k} KiB")),
            f.peak_kib.map_or("n/a".to_string(), |k| format!("{k} KiB"))
        );
    }

    pub(super) fn run_tier3(n: u64) {
        let g = Gen::new();
        println!("vpl_throughput tier 3: {n} events per workload, {KEYS} keys, single thread");
        let gen_n = n.min(1_000_000);
        let gen_only = measure(
            gen_n,
            |i| {
                black_box(g.late_reading(i));
                black_box(g.shop(i));
                0
            },
            || 0,
        );
        println!(
            "  event generation alone: {} events/CPU-s ({gen_n} events of each workload)",
            gen_only.cpu.map_or("n/a".to_string(), |c| format!(
                "{:.0}",
                2.0 * gen_n as f64 / c
            )),
        );
        if selected("watermark") {
            let (e, early) = engine_run_flat(WATERMARKED_AVG, n, |i| g.late_reading(i));
            let b = watermarked_baseline(&g, n);
            report(
                "watermarked tumbling 1s avg per key (.watermark(100ms) .allowed_lateness(200ms))",
                n,
                &e,
                &b,
                Some(1_000_000.0),
            );
            flat_line(early, &e);
            engine_share(n, &e, |i| g.late_reading(i));
        }
        if selected("pattern") {
            let (e, early) = engine_run_flat(PATTERN, n, |i| g.shop(i));
            let b = pattern_baseline(&g, n);
            report(
                "named pattern SEQ(Login, Browse+, NOT Logout, Buy) within 5s partition by user",
                n,
                &e,
                &b,
                Some(500_000.0),
            );
            flat_line(early, &e);
            engine_share(n, &e, |i| g.shop(i));
        }
    }

    /// Whether workload `name` runs (`VPL_THROUGHPUT_ONLY` unset, or it names the workload).
    fn selected(name: &str) -> bool {
        std::env::var("VPL_THROUGHPUT_ONLY")
            .map_or(true, |only| only.split(',').any(|w| w.trim() == name))
    }

    pub(super) fn run_all(n: u64) {
        let g = Gen::new();
        println!("vpl_throughput tier 2: {n} events per workload, {KEYS} keys, single thread");
        let base_rss = vm_kib("VmRSS:");
        let gen_n = n.min(1_000_000);
        let gen_only = measure(
            gen_n,
            |i| {
                black_box(g.reading(i));
                black_box(g.click(i));
                black_box(g.trade(i));
                0
            },
            || 0,
        );
        println!(
            "  event generation alone: {:.0} events/s wall, {} events/CPU-s ({gen_n} events of each workload); RSS before the workloads {}",
            3.0 * gen_n as f64 / gen_only.secs,
            gen_only
                .cpu
                .map_or("n/a".to_string(), |c| format!("{:.0}", 3.0 * gen_n as f64 / c)),
            base_rss.map_or("n/a".to_string(), |k| format!("{k} KiB"))
        );
        if selected("window") {
            let (e, early) = engine_run_flat(WINDOWED_AVG, n, |i| g.reading(i));
            let b = windowed_baseline(&g, n);
            report(
                "tumbling 1s avg per key (.partition_by .window .aggregate)",
                n,
                &e,
                &b,
                Some(1_000_000.0),
            );
            flat_line(early, &e);
            engine_share(n, &e, |i| g.reading(i));
        }
        if selected("sequence") {
            let (e, early) = engine_run_flat(SEQUENCE, n, |i| g.click(i));
            let b = sequence_baseline(&g, n);
            report(
                "3-step sequence Login -> Browse -> Buy .partition_by(user) .within(5s)",
                n,
                &e,
                &b,
                Some(500_000.0),
            );
            flat_line(early, &e);
            engine_share(n, &e, |i| g.click(i));
        }
        if selected("join") {
            let (e, early) = engine_run_flat(JOIN, n, |i| g.trade(i));
            let b = join_baseline(&g, n);
            report("join(Order, Payment) .on(id) .window(1s)", n, &e, &b, None);
            flat_line(early, &e);
            engine_share(n, &e, |i| g.trade(i));
        }
    }
}
