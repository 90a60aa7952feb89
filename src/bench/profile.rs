//! Totals of a libtorch profiler recording ([`crate::gpu::Profiler`]): where the host's time goes
//! (aten ops by self time), where the GPU's time goes (by kernel, by the aten op that launched it, and
//! by the autograd function whose backward launched it), and how busy the GPU was over the wall
//! time. `kdseg bench run mos|train --profile DIR` writes one of these per suite.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// One recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// A kernel, copy or memset on the GPU (otherwise a host event).
    pub on_gpu: bool,
    /// Kineto's activity type: 0 host op, 1 user annotation, 7 CUDA runtime, 8 CUDA driver, ...
    pub activity: u8,
    pub thread: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Links a kernel to the runtime call (on the host) that launched it.
    pub correlation: u64,
    pub name: String,
    /// Input shapes of a host op, e.g. `[[8,32,480,362],[32,32,3,3]]` (empty when unknown).
    pub shapes: String,
}

const HOST_OP: u8 = 0;
const USER_ANNOTATION: u8 = 1;
const CUDA_RUNTIME: u8 = 7;
const CUDA_DRIVER: u8 = 8;
const BACKWARD_PREFIX: &str = "autograd::engine::evaluate_function: ";

impl Event {
    fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Reads the events file the profiler shim writes; a malformed line is an error naming its number.
pub fn read_events(path: &Path) -> Result<Vec<Event>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, line)| parse_event(line).ok_or_else(|| format!("{}:{}: not a profiler event: {line:?}", path.display(), i + 1)))
        .collect()
}

fn parse_event(line: &str) -> Option<Event> {
    let mut f = line.splitn(8, '\t');
    let on_gpu = match f.next()? {
        "cuda" => true,
        "cpu" => false,
        _ => return None,
    };
    Some(Event {
        on_gpu,
        activity: f.next()?.parse().ok()?,
        thread: f.next()?.parse().ok()?,
        start_ns: f.next()?.parse().ok()?,
        end_ns: f.next()?.parse().ok()?,
        correlation: f.next()?.parse().ok()?,
        name: f.next()?.to_string(),
        shapes: f.next().unwrap_or_default().to_string(),
    })
}

/// A named total, per profiled iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub calls: f64,
    pub ms: f64,
}

/// Per-iteration totals of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSummary {
    pub iterations: usize,
    /// First to last event.
    pub wall_ms: f64,
    /// Time during which at least one kernel, copy or memset ran.
    pub gpu_busy_ms: f64,
    /// Host aten ops by self time (their time minus that of the ops they called).
    pub host_ops: Vec<Row>,
    /// GPU time by kernel name.
    pub kernels: Vec<Row>,
    /// GPU time by the innermost aten op that launched the kernel.
    pub gpu_by_op: Vec<Row>,
    /// GPU time by the autograd function whose backward launched it ("forward" outside backward).
    pub gpu_by_phase: Vec<Row>,
    /// GPU time by launching op and its input shapes: which convolution, which batch norm.
    pub gpu_by_call: Vec<Row>,
}

/// Totals `events` recorded over `iterations` iterations (steps or scans), per iteration.
pub fn summarise(events: &[Event], iterations: usize) -> ProfileSummary {
    let per = iterations.max(1) as f64;
    let ms = |ns: u64| ns as f64 / 1e6 / per;
    let wall_ns = match (events.iter().map(|e| e.start_ns).min(), events.iter().map(|e| e.end_ns).max()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    // host: per thread, ops nest; a sweep in start order keeps the stack of enclosing ops
    let mut by_thread: HashMap<u64, Vec<&Event>> = HashMap::new();
    for e in events.iter().filter(|e| !e.on_gpu) {
        by_thread.entry(e.thread).or_default().push(e);
    }
    let mut self_ns: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut launcher: HashMap<u64, (&str, &str, String)> = HashMap::new();
    for list in by_thread.values_mut() {
        list.sort_by_key(|e| (e.start_ns, std::cmp::Reverse(e.end_ns)));
        let mut stack: Vec<(&Event, u64)> = Vec::new();
        for e in list.iter() {
            while stack.last().is_some_and(|(top, _)| top.end_ns <= e.start_ns) {
                if let Some(done) = stack.pop() {
                    close(done, &mut self_ns);
                }
            }
            match e.activity {
                HOST_OP | USER_ANNOTATION => {
                    if let Some((_, own)) = stack.last_mut() {
                        *own = own.saturating_sub(e.duration_ns());
                    }
                    stack.push((e, e.duration_ns()));
                }
                CUDA_RUNTIME | CUDA_DRIVER => {
                    let op = stack.last().map(|(op, _)| op.name.as_str()).unwrap_or("(outside aten ops)");
                    let call = stack.last().map(|(op, _)| format!("{} {}", op.name, op.shapes)).unwrap_or_else(|| op.to_string());
                    let phase = stack.iter().find_map(|(op, _)| op.name.strip_prefix(BACKWARD_PREFIX)).unwrap_or("forward");
                    launcher.insert(e.correlation, (op, phase, call));
                }
                _ => {}
            }
        }
        for done in stack.drain(..) {
            close(done, &mut self_ns);
        }
    }
    // GPU: totals by kernel, by launching op and by phase; busy time is the union of intervals
    let mut kernels: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut by_op: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut by_phase: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut by_call: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut intervals = Vec::new();
    for e in events.iter().filter(|e| e.on_gpu) {
        let d = e.duration_ns();
        let (op, phase, call) = launcher.get(&e.correlation).map(|(o, p, c)| (*o, *p, c.as_str())).unwrap_or(("(unknown launcher)", "(unknown)", "(unknown launcher)"));
        for (table, key) in [(&mut kernels, kernel_label(&e.name)), (&mut by_op, op), (&mut by_phase, phase), (&mut by_call, call)] {
            let entry = table.entry(key).or_default();
            entry.0 += 1;
            entry.1 += d;
        }
        intervals.push((e.start_ns, e.end_ns));
    }
    intervals.sort_unstable();
    let mut busy = 0u64;
    let mut current: Option<(u64, u64)> = None;
    for (s, e) in intervals {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                busy += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        busy += ce - cs;
    }
    let rows = |table: HashMap<&str, (u64, u64)>| {
        let mut rows: Vec<Row> = table.into_iter().map(|(name, (calls, ns))| Row { name: name.to_string(), calls: calls as f64 / per, ms: ms(ns) }).collect();
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));
        rows
    };
    ProfileSummary {
        iterations,
        wall_ms: ms(wall_ns),
        gpu_busy_ms: ms(busy),
        host_ops: rows(self_ns),
        kernels: rows(kernels),
        gpu_by_op: rows(by_op),
        gpu_by_phase: rows(by_phase),
        gpu_by_call: rows(by_call),
    }
}

/// Adds a finished host op's self time to its name's total.
fn close<'a>((op, own): (&'a Event, u64), self_ns: &mut HashMap<&'a str, (u64, u64)>) {
    let entry = self_ns.entry(op.name.as_str()).or_default();
    entry.0 += 1;
    entry.1 += own;
}

/// A kernel's name without its return type, arguments and the tail of long template lists, so
/// instances of one kernel template for the same functor add up.
fn kernel_label(name: &str) -> &str {
    let name = name.strip_prefix("void ").unwrap_or(name);
    let end = name.find('(').unwrap_or(name.len()).min(110);
    let mut end = end.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Runs `f` under the profiler (GPU activity too when `cuda`) and writes `DIR/NAME-events.tsv` (the
/// raw events) and `DIR/NAME-profile.txt` (their totals per iteration, [`render`]).
pub fn record<T>(dir: &Path, name: &str, cuda: bool, iterations: usize, f: impl FnOnce() -> T) -> Result<(T, ProfileSummary), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let profiler = crate::gpu::Profiler::start(cuda)?;
    let value = f();
    let events_path = dir.join(format!("{name}-events.tsv"));
    profiler.stop(&events_path)?;
    let summary = summarise(&read_events(&events_path)?, iterations);
    let report_path = dir.join(format!("{name}-profile.txt"));
    std::fs::write(&report_path, render(&summary, name, 40)).map_err(|e| format!("{}: {e}", report_path.display()))?;
    Ok((value, summary))
}

/// The summary as text: the headline figures, then the `top` largest rows of each table.
pub fn render(summary: &ProfileSummary, title: &str, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}: profile over {} iterations, per iteration", summary.iterations);
    let busy = if summary.wall_ms > 0.0 { 100.0 * summary.gpu_busy_ms / summary.wall_ms } else { 0.0 };
    let _ = writeln!(out, "wall {:.3} ms, GPU busy {:.3} ms ({busy:.0} %)", summary.wall_ms, summary.gpu_busy_ms);
    for (heading, rows) in [
        ("GPU time by phase (forward, or the backward of an autograd function)", &summary.gpu_by_phase),
        ("GPU time by launching aten op", &summary.gpu_by_op),
        ("GPU time by kernel", &summary.kernels),
        ("GPU time by launching op and its input shapes", &summary.gpu_by_call),
        ("host self time by aten op", &summary.host_ops),
    ] {
        let total: f64 = rows.iter().map(|r| r.ms).sum();
        let _ = writeln!(out, "\n## {heading} (total {total:.3} ms)");
        for r in rows.iter().take(top) {
            let _ = writeln!(out, "{:>9.3} ms {:>8.1} calls  {}", r.ms, r.calls, r.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(on_gpu: bool, activity: u8, thread: u64, start_ns: u64, end_ns: u64, correlation: u64, name: &str) -> Event {
        Event { on_gpu, activity, thread, start_ns, end_ns, correlation, name: name.into(), shapes: String::new() }
    }

    #[test]
    fn kernels_are_charged_to_their_launching_op_and_backward_phase() {
        let events = vec![
            // forward: aten::conv2d → aten::convolution launches kernel 1
            ev(false, 0, 1, 0, 100, 0, "aten::conv2d"),
            ev(false, 0, 1, 10, 90, 0, "aten::convolution"),
            ev(false, 7, 1, 20, 30, 1, "cudaLaunchKernel"),
            // backward on another thread: IndexSelectBackward0 → aten::index_add_ launches kernel 2
            ev(false, 0, 2, 200, 400, 0, "autograd::engine::evaluate_function: IndexSelectBackward0"),
            ev(false, 0, 2, 210, 390, 0, "aten::index_add_"),
            ev(false, 7, 2, 220, 230, 2, "cudaLaunchKernel"),
            ev(true, 5, 9, 40, 140, 1, "void cudnn::conv_kernel<float>(int)"),
            ev(true, 5, 9, 120, 520, 2, "void at::native::indexFuncLargeIndex<float, 4>(float*, long)"),
        ];
        let s = summarise(&events, 2);
        assert_eq!(s.iterations, 2);
        assert!((s.wall_ms - 520.0 / 1e6 / 2.0).abs() < 1e-12);
        // kernels overlap from 120 to 140: busy is 40..520
        assert!((s.gpu_busy_ms - 480.0 / 1e6 / 2.0).abs() < 1e-12);
        let find = |rows: &[Row], name: &str| rows.iter().find(|r| r.name == name).map(|r| r.ms * 2e6).unwrap_or(-1.0);
        assert_eq!(find(&s.gpu_by_op, "aten::convolution"), 100.0);
        assert_eq!(find(&s.gpu_by_op, "aten::index_add_"), 400.0);
        assert_eq!(find(&s.gpu_by_phase, "forward"), 100.0);
        assert_eq!(find(&s.gpu_by_phase, "IndexSelectBackward0"), 400.0);
        assert_eq!(find(&s.kernels, "at::native::indexFuncLargeIndex<float, 4>"), 400.0);
        assert_eq!(find(&s.gpu_by_call, "aten::index_add_ "), 400.0);
        // self time: conv2d 100 − 80 (convolution), convolution 80, evaluate_function 200 − 180
        assert_eq!(find(&s.host_ops, "aten::conv2d"), 20.0);
        assert_eq!(find(&s.host_ops, "aten::convolution"), 80.0);
        assert_eq!(find(&s.host_ops, "autograd::engine::evaluate_function: IndexSelectBackward0"), 20.0);
        assert_eq!(s.gpu_by_phase[0].name, "IndexSelectBackward0", "largest first");
        let text = render(&s, "test", 5);
        assert!(text.contains("IndexSelectBackward0") && text.contains("GPU busy"), "{text}");
    }

    #[cfg(kdseg_cuda_shim)]
    #[test]
    fn the_libtorch_profiler_records_host_ops() {
        let dir = std::env::temp_dir().join(format!("kdseg-profile-record-{}", std::process::id()));
        let a = tch::Tensor::ones([64, 64], (tch::Kind::Float, tch::Device::Cpu));
        let (sum, summary) = record(&dir, "cpu", false, 3, || (0..3).map(|_| a.matmul(&a).sum(tch::Kind::Float).double_value(&[])).sum::<f64>()).unwrap();
        assert_eq!(sum, 3.0 * 64.0 * 64.0 * 64.0);
        let mm = summary.host_ops.iter().find(|r| r.name == "aten::mm").expect("aten::mm recorded");
        // at least: kineto may also record another test thread's ops
        assert!(mm.calls >= 1.0, "three calls over three iterations, got {}", mm.calls);
        assert!(std::fs::read_to_string(dir.join("cpu-profile.txt")).unwrap().contains("aten::mm"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_malformed_events_file_names_the_line() {
        let dir = std::env::temp_dir().join(format!("kdseg-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.tsv");
        std::fs::write(&path, "cpu\t0\t1\t0\t10\t0\taten::add\ngpu\tx\n").unwrap();
        let err = read_events(&path).unwrap_err();
        assert!(err.contains("events.tsv:2"), "{err}");
        std::fs::write(&path, "cpu\t0\t1\t0\t10\t0\taten::add\t[[2,3],[2,3]]\n").unwrap();
        let events = read_events(&path).unwrap();
        assert_eq!((events[0].name.as_str(), events[0].shapes.as_str()), ("aten::add", "[[2,3],[2,3]]"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
