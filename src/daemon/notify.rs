//! systemd notification (`sd_notify`): READY=1, STOPPING=1, STATUS=... to $NOTIFY_SOCKET.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. "READY=1\nSTATUS=mounted") if systemd asked for notifications.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = if let Some(abs) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abs.as_bytes())
    } else {
        SocketAddr::from_pathname(&path)
    };
    let sent = UnixDatagram::unbound().and_then(|s| match addr {
        Ok(a) => s.send_to_addr(state.as_bytes(), &a),
        Err(e) => Err(e),
    });
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd at {path}: {e}");
    }
}
