/**
 * h2load (nghttp2-client): installing it when missing, running it for a
 * bounded time, and reading its summary. h2load 1.52 prints min/max/mean/sd of
 * "time for request" but no percentiles, so every run writes --log-file (one
 * line per request: start µs, HTTP status, µs to the end of the response) and
 * p50/p99 are computed from it. Requests still in flight when the warm-up
 * ends are logged with status 0 and left out of the percentiles. Given a
 * pid, the CPU of that process tree is sampled as h2load says its measured
 * window begins and ends (its stdout, line-buffered through stdbuf).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cpuWindow, msPerCheckAtRate, sampleCpu, type CpuSample, type CpuWindow } from './support/cpu.js';
import { scratchDir, track } from './support/processes.js';
import { percentile } from './support/stats.js';

export interface H2loadOptions {
  url: string;
  /** Request body file (-d): the method becomes POST. */
  dataFile?: string;
  headers: string[];
  clients: number;
  /** Concurrent streams per connection (-m); with --h1 and -d h2load pipelines nothing. */
  streams: number;
  durationS: number;
  warmUpS: number;
  /** Open loop: requests per second for each client (--rps). */
  rpsPerClient?: number;
  h1?: boolean;
  /** Sample this process tree's CPU over the measured part of the run (after the warm-up). */
  cpuPid?: number;
}

export interface RunCpu {
  window: CpuWindow;
  /** CPU ms of the measured tree per request answered (its CPU rate over h2load's request rate). */
  msPerRequest: number;
}

export interface H2loadResult {
  reqPerSec: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  /** Responses by status class, from the summary ("2xx" -> n). */
  statuses: Record<string, number>;
  /** Milliseconds. */
  latency: { min: number; max: number; mean: number; sd: number; p50: number; p99: number };
  /** Requests with a final status in the log file (the percentiles' sample). */
  logged: number;
  /** The measured process's CPU, when cpuPid was given. */
  cpu?: RunCpu;
}

let version: string | undefined;

/** The lines h2load prints as its measured window (after the warm-up) begins and ends. */
const WINDOW_STARTED = 'Main benchmark duration is started';
const WINDOW_OVER = 'Main benchmark duration is over';
const MAX_OUTPUT = 16 * 1024 * 1024;
/** coreutils' stdbuf: without it h2load's stdout is block-buffered into a pipe and the window lines come at the end. */
const LINE_BUFFERED = existsSync('/usr/bin/stdbuf') || existsSync('/bin/stdbuf');

/** h2load's version line, installing nghttp2-client first when h2load is missing. */
export function ensureH2load(): string {
  if (version !== undefined) return version;
  const probe = () => execFileSync('h2load', ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  try {
    version = probe();
  } catch {
    process.stderr.write('h2load not found: installing nghttp2-client\n');
    const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
    const sh = (command: string) =>
      execFileSync('/bin/sh', ['-c', `${sudo.join(' ')} ${command}`], { stdio: 'inherit', timeout: 300_000 });
    sh('apt-get update');
    sh('apt-get install -y nghttp2-client');
    version = probe();
  }
  return version;
}

export async function runH2load(options: H2loadOptions): Promise<H2loadResult> {
  const dir = scratchDir('authz-h2load-');
  const logFile = join(dir, 'requests.log');
  const args = [
    '-c', String(options.clients),
    '-m', String(options.streams),
    '-D', String(options.durationS),
    '--warm-up-time', String(options.warmUpS),
    '--log-file', logFile,
    ...options.headers.flatMap((header) => ['-H', header]),
  ];
  if (options.dataFile) args.push('-d', options.dataFile);
  if (options.rpsPerClient !== undefined) args.push('--rps', String(Math.max(1, Math.round(options.rpsPerClient))));
  if (options.h1) args.push('--h1');
  args.push(options.url);
  const pid = options.cpuPid;
  let first: CpuSample | undefined;
  let last: CpuSample | undefined;
  // A process that died is reported by the sample after the run, not from an output event.
  const trySample = (tree: number) => {
    try {
      return sampleCpu(tree);
    } catch {
      return undefined;
    }
  };
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      // h2load announces its measured window on stdout; line-buffered (stdbuf), the lines arrive as it begins and ends.
      const child = track(spawn(LINE_BUFFERED ? 'stdbuf' : 'h2load', LINE_BUFFERED ? ['-oL', 'h2load', ...args] : args, { stdio: ['ignore', 'pipe', 'pipe'] }));
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        if (out.length < MAX_OUTPUT) out += chunk;
        if (pid === undefined) return;
        if (first === undefined && out.includes(WINDOW_STARTED)) first = trySample(pid);
        if (last === undefined && out.includes(WINDOW_OVER)) last = trySample(pid);
      });
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        if (err.length < MAX_OUTPUT) err += chunk;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), (options.durationS + options.warmUpS + 30) * 1000);
      child.on('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`h2load failed: ${error.message}`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`h2load failed (${code ?? signal}):\n${err.slice(-2000)}`));
      });
    });
    const result = parse(stdout, readFileSync(logFile, 'utf8'));
    // Without the window lines (no stdbuf) there is no CPU figure rather than a wrong one.
    if (first && last) {
      const window = cpuWindow(first, last);
      result.cpu = { window, msPerRequest: msPerCheckAtRate(window, result.reqPerSec) };
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };

function duration(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!match) throw new Error(`h2load: cannot read the duration "${text}"`);
  return Number(match[1]) * MS[match[2]!]!;
}

export function parse(stdout: string, log: string): H2loadResult {
  const finished = /finished in [\d.]+s, ([\d.]+) req\/s/.exec(stdout);
  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(stdout);
  const statusLine = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  const timing = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)/.exec(stdout);
  if (!finished || !requests || !statusLine || !timing) throw new Error(`h2load: unexpected output:\n${stdout}`);
  const times: number[] = [];
  for (const line of log.split('\n')) {
    const [, status, micros] = line.split('\t');
    if (status === undefined || status === '0' || status === '-1') continue;
    times.push(Number(micros) / 1000);
  }
  times.sort((a, b) => a - b);
  return {
    reqPerSec: Number(finished[1]),
    done: Number(requests[3]),
    succeeded: Number(requests[4]),
    failed: Number(requests[5]),
    errored: Number(requests[6]),
    statuses: { '2xx': Number(statusLine[1]), '3xx': Number(statusLine[2]), '4xx': Number(statusLine[3]), '5xx': Number(statusLine[4]) },
    latency: {
      min: duration(timing[1]!),
      max: duration(timing[2]!),
      mean: duration(timing[3]!),
      sd: duration(timing[4]!),
      p50: percentile(times, 0.5),
      p99: percentile(times, 0.99),
    },
    logged: times.length,
  };
}
