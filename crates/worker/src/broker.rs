//! Embedded MQTT broker (rumqttd) for tests and `varpulis local`.
//!
//! rumqttd runs its own threads and offers no stop call: the broker lives until the process
//! exits. The handle records where it listens.

use crate::error::WorkerError;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long `start_embedded_broker` waits for the listener to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A running embedded broker.
#[derive(Debug)]
pub struct BrokerHandle {
    /// Address the broker listens on (127.0.0.1:port).
    pub addr: SocketAddr,
    _thread: std::thread::JoinHandle<()>,
}

impl BrokerHandle {
    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Starts rumqttd (MQTT 3.1.1) on `127.0.0.1:port` in a background thread and returns once it
/// accepts TCP connections. Fails when the port is taken or the broker does not come up.
pub fn start_embedded_broker(port: u16) -> Result<BrokerHandle, WorkerError> {
    start_embedded_broker_with(port, None)
}

/// The certificate and key (PEM files) of an embedded broker speaking MQTT over TLS
/// (`mqtts://`; no client certificates are asked for).
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// Certificate chain.
    pub cert: std::path::PathBuf,
    /// Private key.
    pub key: std::path::PathBuf,
}

/// Like [`start_embedded_broker`], over TLS when `tls` is given (clients then use
/// `mqtts://127.0.0.1:port`).
pub fn start_embedded_broker_with(
    port: u16,
    tls: Option<BrokerTls>,
) -> Result<BrokerHandle, WorkerError> {
    start_embedded_broker_at(([127, 0, 0, 1], port).into(), tls)
}

/// Like [`start_embedded_broker_with`], listening on `addr` (e.g. a bridge address that
/// processes in other network namespaces reach).
pub fn start_embedded_broker_at(
    addr: SocketAddr,
    tls: Option<BrokerTls>,
) -> Result<BrokerHandle, WorkerError> {
    let port = addr.port();
    // Fail early and clearly when the port is taken (rumqttd would only log it on its thread).
    drop(TcpListener::bind(addr)?);
    let mut config = broker_config(addr);
    if let Some(tls) = tls {
        let tls = rumqttd::TlsConfig::Rustls {
            capath: None,
            certpath: tls.cert.display().to_string(),
            keypath: tls.key.display().to_string(),
        };
        if !tls.validate_paths() {
            return Err(WorkerError::Config(
                "embedded broker: TLS certificate or key file missing".into(),
            ));
        }
        for server in config.v4.iter_mut().flat_map(|v4| v4.values_mut()) {
            server.tls = Some(tls.clone());
        }
    }
    let thread = std::thread::Builder::new()
        .name(format!("mqtt-broker-{port}"))
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })?;
    let started = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(BrokerHandle {
                addr,
                _thread: thread,
            });
        }
        if thread.is_finished() || started.elapsed() > START_DEADLINE {
            return Err(WorkerError::Internal(format!(
                "embedded MQTT broker did not start on {addr}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn broker_config(addr: SocketAddr) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: 16 * 1024 * 1024,
        max_inflight_count: 1024,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4-1".to_owned(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: 10_010,
        max_outgoing_packet_count: 200,
        max_segment_size: 104_857_600,
        max_segment_count: 10,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let mut v4 = HashMap::new();
    v4.insert("1".to_owned(), server);
    rumqttd::Config {
        id: 0,
        router,
        v4: Some(v4),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}
