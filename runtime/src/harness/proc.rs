//! Processes seen from /proc, and signals to them.

/// Sends `signal` to `pid`; panics when it cannot (no such process).
pub fn signal(pid: i32, signal: i32) {
    assert!(
        try_signal(pid, signal),
        "cannot send signal {signal} to {pid}"
    );
}

/// Sends `signal` to `pid`; false when there is no such process.
pub fn try_signal(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) only sends a signal; the callers name processes their
    // test started or that an agent it started reported.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// True once `pid` has exited (a zombie nobody reaped yet counts as gone).
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Peak resident memory of `pid` in bytes (`VmHWM` of /proc/PID/status),
/// or `None` when it is gone.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:").map(|kb| kb * 1024)
}

/// Resident memory of `pid` in bytes now (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:").map(|kb| kb * 1024)
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    // "VmHWM:     12345 kB"
    line[field.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_at_least_its_resident_size() {
        let me = std::process::id();
        let peak = peak_rss_bytes(me).expect("VmHWM of this process");
        let now = rss_bytes(me).expect("VmRSS of this process");
        assert!(peak >= now && now > 0, "peak {peak}, now {now}");
        assert!(!gone(me as i32));
    }
}
