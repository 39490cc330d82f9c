//! A test DNS server (tests/support/dns_server.py) answering from a given
//! zone, so MX routing can be tested through the gateway's real resolver.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Dns {
    child: Child,
    pub port: u16,
}

impl Dns {
    /// `zone`: JSON as described in dns_server.py.
    pub fn start(zone: &serde_json::Value) -> Dns {
        let port = super::free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dns_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(zone.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready"), "DNS server did not start: {line}");
        Dns { child, port }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
