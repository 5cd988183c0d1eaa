/**
 * CPU time of a measured process and its descendants (a cluster's primary
 * and workers), from /proc/<pid>/stat: utime + stime, which already sum
 * every thread of a process (JS, GC, libuv pool). Read by the driver from
 * outside, so measuring costs the measured process nothing, and the same way
 * for the service, the baselines and the peer.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** utime and stime (clock ticks) and the parent pid, from the text of /proc/<pid>/stat. */
export function parseStat(text: string): { ppid: number; ticks: number } {
  // The command name (field 2) is in parentheses and may itself hold spaces and parentheses: fields are counted after the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error('/proc stat: no command name');
  const fields = text.slice(close + 2).trim().split(' ');
  // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  const ppid = Number(fields[1]);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isInteger(ppid) || !Number.isInteger(utime) || !Number.isInteger(stime)) throw new Error(`/proc stat: unreadable fields in "${text.slice(0, 120)}"`);
  return { ppid, ticks: utime + stime };
}

/**
 * `root` and every descendant of it, given each process's parent. The walk
 * is bounded by the number of processes, so a parent loop cannot hang it.
 */
export function descendants(root: number, parents: ReadonlyMap<number, number>): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parents) {
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const out = [root];
  const seen = new Set(out);
  for (let i = 0; i < out.length && i <= parents.size; i += 1) {
    for (const child of children.get(out[i]!) ?? []) {
      if (!seen.has(child)) {
        seen.add(child);
        out.push(child);
      }
    }
  }
  return out;
}

let ticksPerSecond: number | undefined;

/** Clock ticks per second (getconf CLK_TCK), read once. */
export function clockTicks(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim());
  if (!Number.isInteger(ticksPerSecond) || ticksPerSecond <= 0) throw new Error(`getconf CLK_TCK gave ${ticksPerSecond}`);
  return ticksPerSecond;
}

function readStat(pid: number): { ppid: number; ticks: number } | null {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    // Gone between the listing and the read.
    return null;
  }
}

export interface CpuSample {
  /** CPU seconds of the process tree. */
  seconds: number;
  /** performance.now() of the sample, ms. */
  at: number;
  /** How many processes were summed. */
  processes: number;
}

/**
 * The CPU seconds of `pid` and its live descendants. /proc/<pid>/task/<tid>/children
 * needs CONFIG_PROC_CHILDREN, which not every kernel has, so /proc is walked
 * (a few hundred small reads). A descendant that exits between two samples
 * takes its ticks with it: the windows here are short and no worker should exit.
 */
export function sampleCpu(pid: number): CpuSample {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat) stats.set(Number(name), stat);
  }
  const root = stats.get(pid);
  if (!root) throw new Error(`no process ${pid} in /proc`);
  const tree = descendants(pid, new Map([...stats].map(([p, s]) => [p, s.ppid])));
  let ticks = 0;
  for (const p of tree) ticks += stats.get(p)?.ticks ?? 0;
  return { seconds: ticks / clockTicks(), at: performance.now(), processes: tree.length };
}

export interface CpuWindow {
  /** CPU seconds the tree spent in the window. */
  seconds: number;
  /** Wall seconds between the two samples. */
  wallSeconds: number;
  /** Processes summed at the end (2 workers + primary: 3). */
  processes: number;
}

export function cpuWindow(before: CpuSample, after: CpuSample): CpuWindow {
  return { seconds: after.seconds - before.seconds, wallSeconds: (after.at - before.at) / 1000, processes: after.processes };
}

/** Milliseconds of CPU per Check: `checks` answered in the window; NaN when nothing was. */
export function msPerCheck(window: CpuWindow, checks: number): number {
  return checks > 0 ? (window.seconds * 1000) / checks : Number.NaN;
}

/**
 * Milliseconds of CPU per Check when the Checks are known as a rate over a
 * window of the same steady load (h2load's req/s), not as a count over
 * exactly these two samples: CPU seconds per wall second over Checks per second.
 */
export function msPerCheckAtRate(window: CpuWindow, checksPerSecond: number): number {
  if (!(window.wallSeconds > 0) || !(checksPerSecond > 0)) return Number.NaN;
  return ((window.seconds / window.wallSeconds) * 1000) / checksPerSecond;
}
