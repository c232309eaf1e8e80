//! CPU time used by this process, for the summary `tandem run` prints.

use std::time::Duration;

/// User plus system CPU time of this process so far, where the OS tells it
/// (Linux `/proc/self/stat`); `None` elsewhere.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture it supports.
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_grows_while_this_thread_computes() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let before = super::process_cpu_time().expect("linux exposes /proc/self/stat");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while super::process_cpu_time().expect("still readable") <= before {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "CPU time never advanced"
            );
        }
        std::hint::black_box(x);
    }
}
