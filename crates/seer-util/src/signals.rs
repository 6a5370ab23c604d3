//! Which signals this process was started ignoring: a command run in the
//! background by a script (`nohup`, `cmd &` in a non-interactive shell)
//! inherits SIGINT ignored, and must leave it so rather than install a
//! handler that turns it back on.

/// Whether signal `number` was ignored when this process started, from the
/// `SigIgn` mask of `/proc/self/status` (false where there is none). Ask
/// before installing a handler of this process's own for it.
pub fn ignored_at_start(number: i32) -> bool {
    let Some(bit) = u32::try_from(number - 1).ok().filter(|b| *b < 64) else {
        return false;
    };
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << bit) != 0)
}
