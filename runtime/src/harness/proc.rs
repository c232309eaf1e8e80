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

/// CPU time each thread of `pid` has used so far, by thread name (threads
/// of one name summed); empty once the process is gone. The time on a CPU
/// in nanoseconds, from `/proc/PID/task/*/schedstat`: the clock ticks of
/// `stat` are 10 ms, and a gateway idling at a few tenths of a percent uses
/// only a handful of them in a window. Where the kernel keeps no
/// schedstat, those ticks (user + system). A thread that ends takes its
/// time with it.
pub fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<String, std::time::Duration> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `tid (comm) state ...`: comm may hold spaces and parentheses.
        let (Some(open), Some((_, fields))) = (stat.find('('), stat.rsplit_once(')')) else {
            continue;
        };
        let name = stat
            .get(open + 1..stat.len() - fields.len() - 1)
            .unwrap_or_default()
            .to_owned();
        let on_cpu = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .map(std::time::Duration::from_nanos)
            .unwrap_or_else(|| ticks(fields));
        *out.entry(name).or_default() += on_cpu;
    }
    out
}

/// utime + stime of a `stat` line's fields after the command name.
fn ticks(fields: &str) -> std::time::Duration {
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // After the comm: state is field 0, utime 11, stime 12.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::time::Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_sec)
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_busy_threads_time_shows_under_its_name() {
        let pid = std::process::id();
        let busy = std::thread::Builder::new()
            .name("tandem-probe".into())
            .spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let mut x = 0u64;
                loop {
                    for i in 0..100_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                    let used = cpu_by_thread(pid).get("tandem-probe").copied();
                    if used.is_some_and(|u| u >= std::time::Duration::from_millis(5))
                        || std::time::Instant::now() > deadline
                    {
                        return used;
                    }
                }
            })
            .unwrap();
        let used = busy.join().unwrap();
        assert!(
            used.is_some_and(|u| u >= std::time::Duration::from_millis(5)),
            "{used:?}"
        );
        // Gone threads and processes count nothing.
        assert!(!cpu_by_thread(pid).contains_key("tandem-probe"));
    }

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
