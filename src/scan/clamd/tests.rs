//! The clamd client against in-process fakes that speak the protocol the way
//! clamd does, including its awkward moments: replies split across writes,
//! an ERROR and a close in the middle of a stream, silence, garbage.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, UnixListener};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(endpoint: Endpoint) -> Client {
    Client {
        endpoint,
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
    }
}

fn duplex_client() -> Client {
    client(Endpoint::Unix("/fake".into()))
}

/// Reads one INSTREAM request as clamd does and returns the reassembled data.
async fn read_instream<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut cmd = [0u8; 10];
    s.read_exact(&mut cmd).await.unwrap();
    assert_eq!(&cmd, b"zINSTREAM\0");
    let mut data = Vec::new();
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return data;
        }
        let mut chunk = vec![0u8; len];
        s.read_exact(&mut chunk).await.unwrap();
        data.extend_from_slice(&chunk);
    }
}

/// Answers one INSTREAM with `pieces` written separately.
async fn answer(mut s: DuplexStream, pieces: &'static [&'static [u8]]) -> Vec<u8> {
    let data = read_instream(&mut s).await;
    for piece in pieces {
        s.write_all(piece).await.unwrap();
        s.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    data
}

fn scan_with(pieces: &'static [&'static [u8]], data: &[u8]) -> (Result<Verdict, ClamdError>, Vec<u8>) {
    rt().block_on(async {
        let (ours, theirs) = tokio::io::duplex(4096);
        let server = tokio::spawn(answer(theirs, pieces));
        let result = duplex_client().instream(ours, data).await;
        (result, server.await.unwrap())
    })
}

#[test]
fn found_reply_names_the_signature() {
    let (result, _) = scan_with(&[b"stream: Win.Test.EICAR_HDB-1 FOUND\0"], b"data");
    assert_eq!(result.unwrap(), Verdict::Found("Win.Test.EICAR_HDB-1".into()));
}

#[test]
fn reply_split_across_many_writes_is_reassembled() {
    let (result, _) = scan_with(
        &[b"str", b"eam: Gateway.Test", b".EICAR-NDB.UNOFFICIAL FO", b"UND", b"\0"],
        b"x",
    );
    assert_eq!(
        result.unwrap(),
        Verdict::Found("Gateway.Test.EICAR-NDB.UNOFFICIAL".into())
    );
}

#[test]
fn clean_reply_and_data_arrive_intact_across_chunks() {
    // Larger than several chunks and not a multiple of the chunk size.
    let data: Vec<u8> = (0..(3 * CHUNK + 123)).map(|i| (i % 251) as u8).collect();
    let (result, received) = scan_with(&[b"stream: ", b"OK\0"], &data);
    assert_eq!(result.unwrap(), Verdict::Clean);
    assert_eq!(received, data);
}

#[test]
fn empty_data_is_just_the_terminator() {
    let (result, received) = scan_with(&[b"stream: OK\0"], b"");
    assert_eq!(result.unwrap(), Verdict::Clean);
    assert!(received.is_empty());
}

#[test]
fn reply_without_nul_before_close_is_accepted() {
    let (result, _) = scan_with(&[b"stream: OK"], b"x");
    assert_eq!(result.unwrap(), Verdict::Clean);
}

#[test]
fn error_reply_is_a_scanner_error_not_clean() {
    let (result, _) = scan_with(&[b"stream: Can't allocate memory ERROR\0"], b"x");
    match result {
        Err(e @ ClamdError::Scanner { .. }) => {
            assert!(e.to_string().contains("Can't allocate memory"), "{e}");
            assert!(!e.is_unavailable());
        }
        other => panic!("expected a scanner error, got {other:?}"),
    }
}

#[test]
fn garbage_and_empty_replies_are_protocol_errors() {
    for pieces in [
        &[b"HTTP/1.1 400 Bad Request\r\n\r\n" as &[u8]] as &'static [&'static [u8]],
        &[],
    ] {
        let (result, _) = scan_with(pieces, b"x");
        assert!(
            matches!(result, Err(ClamdError::Protocol { .. })),
            "{pieces:?} gave {result:?}"
        );
    }
}

#[test]
fn size_limit_error_mid_stream_is_reported_even_though_the_write_fails() {
    rt().block_on(async {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            // Like clamd past StreamMaxLength: read a little, answer, hang up.
            let mut head = [0u8; 200];
            theirs.read_exact(&mut head).await.unwrap();
            theirs
                .write_all(b"INSTREAM size limit exceeded. ERROR\0")
                .await
                .unwrap();
            drop(theirs);
        });
        let data = vec![b'a'; 10 * CHUNK];
        let result = duplex_client().instream(ours, &data).await;
        server.await.unwrap();
        match result {
            Err(e @ ClamdError::Scanner { .. }) => assert!(e.to_string().contains("size limit"), "{e}"),
            other => panic!("expected the size limit error, got {other:?}"),
        }
    });
}

#[test]
fn overlong_reply_is_a_protocol_error() {
    rt().block_on(async {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            read_instream(&mut theirs).await;
            // Stops writing only when the client hangs up.
            while theirs.write_all(&[b'A'; 256]).await.is_ok() {}
        });
        let result = duplex_client().instream(ours, b"x").await;
        assert!(matches!(result, Err(ClamdError::Protocol { .. })), "{result:?}");
        server.await.unwrap();
    });
}

#[test]
fn silent_clamd_is_a_stall_not_a_hang() {
    rt().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            read_instream(&mut s).await;
            // Keep the connection open without answering until the client leaves.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let mut c = client(Endpoint::Tcp(HostPort::parse(&format!("127.0.0.1:{port}"), 0).unwrap()));
        c.io_timeout = Duration::from_millis(200);
        let result = c.scan(b"hello").await;
        assert!(
            matches!(&result, Err(e @ ClamdError::Stalled { .. }) if e.is_unavailable()),
            "{result:?}"
        );
        server.await.unwrap();
    });
}

#[test]
fn tcp_and_unix_endpoints_work_and_a_closed_port_is_unavailable() {
    rt().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let data = read_instream(&mut s).await;
            assert_eq!(data, b"over tcp");
            s.write_all(b"stream: OK\0").await.unwrap();
        });
        let tcp = client(Endpoint::parse(&format!("127.0.0.1:{port}"), Path::new("/")).unwrap());
        assert_eq!(tcp.scan(b"over tcp").await.unwrap(), Verdict::Clean);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clamd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut cmd = [0u8; 6];
                s.read_exact(&mut cmd).await.unwrap();
                if &cmd == b"zPING\0" {
                    s.write_all(b"PONG\0").await.unwrap();
                } else {
                    let mut rest = [0u8; 4];
                    s.read_exact(&mut rest).await.unwrap();
                    let mut len = [0u8; 4];
                    loop {
                        s.read_exact(&mut len).await.unwrap();
                        let n = u32::from_be_bytes(len) as usize;
                        if n == 0 {
                            break;
                        }
                        let mut skip = vec![0u8; n];
                        s.read_exact(&mut skip).await.unwrap();
                    }
                    s.write_all(b"stream: Test.Sig FOUND\0").await.unwrap();
                }
            }
        });
        let unix = client(Endpoint::parse(path.to_str().unwrap(), Path::new("/")).unwrap());
        unix.ping().await.unwrap();
        assert_eq!(unix.scan(b"x").await.unwrap(), Verdict::Found("Test.Sig".into()));

        // A port nobody listens on any more.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let down = client(Endpoint::parse(&format!("127.0.0.1:{port}"), Path::new("/")).unwrap());
        let err = down.scan(b"x").await.unwrap_err();
        assert!(
            matches!(err, ClamdError::Connect { .. }) && err.is_unavailable(),
            "{err}"
        );
        let missing = client(Endpoint::Unix(dir.path().join("absent.sock")));
        assert!(missing.scan(b"x").await.unwrap_err().is_unavailable());
    });
}

#[test]
fn replies_are_parsed_strictly() {
    assert_eq!(parse_reply(b"stream: OK\0"), Reply::Verdict(Verdict::Clean));
    assert_eq!(parse_reply(b"stream: OK\n"), Reply::Verdict(Verdict::Clean));
    assert_eq!(
        parse_reply(b"1: stream: Eicar-Signature FOUND"),
        Reply::Verdict(Verdict::Found("Eicar-Signature".into()))
    );
    assert_eq!(
        parse_reply(b"INSTREAM size limit exceeded. ERROR"),
        Reply::Error("INSTREAM size limit exceeded.".into())
    );
    // Neither clean nor a detection: must never be taken for clean.
    for odd in [
        &b"stream: OKAY"[..],
        b"OK",
        b"stream:  FOUND",
        b"stream: two words FOUND",
        b"",
    ] {
        assert!(matches!(parse_reply(odd), Reply::Unexpected(_)), "{odd:?}");
    }
}

#[test]
fn endpoints_parse_as_tcp_or_unix() {
    let base = Path::new("/etc/exogate");
    assert_eq!(
        Endpoint::parse("127.0.0.1:3310", base).unwrap(),
        Endpoint::Tcp(HostPort {
            host: "127.0.0.1".into(),
            port: 3310
        })
    );
    assert_eq!(
        Endpoint::parse("clamav.internal", base).unwrap().to_string(),
        "clamav.internal:3310"
    );
    assert_eq!(Endpoint::parse("[::1]:3310", base).unwrap().to_string(), "[::1]:3310");
    assert_eq!(
        Endpoint::parse("/run/clamav/clamd.ctl", base).unwrap(),
        Endpoint::Unix("/run/clamav/clamd.ctl".into())
    );
    assert_eq!(
        Endpoint::parse("run/clamd.sock", base).unwrap(),
        Endpoint::Unix("/etc/exogate/run/clamd.sock".into())
    );
    assert!(Endpoint::parse("host:notaport", base).is_err());
    assert!(Endpoint::parse("", base).is_err());
}
