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
/// or `None` when it is gone. The kernel folds each thread's page counts
/// into `VmHWM` lazily, so it can lag `VmRSS` by a little: the larger of
/// the two is given.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let peak = status_kb(pid, "VmHWM:")?;
    Some(peak.max(status_kb(pid, "VmRSS:").unwrap_or(0)) * 1024)
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
    fn the_peak_keeps_memory_that_was_touched_and_given_back() {
        let me = std::process::id();
        let before = peak_rss_bytes(me).expect("VmHWM of this process");
        let size = 64 << 20;
        // Touched page by page, so that it is resident; freed (unmapped) after.
        let block = std::hint::black_box(vec![1u8; size]);
        drop(block);
        let after = peak_rss_bytes(me).expect("VmHWM of this process");
        assert!(
            after >= before + size as u64 / 2,
            "peak {after} after touching {size} bytes, {before} before"
        );
        assert!(rss_bytes(me).is_some_and(|now| now > 0));
        assert!(!gone(me as i32));
    }
}
