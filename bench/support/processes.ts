/**
 * Every process the bench starts goes through here, so that all of them are
 * killed when the bench ends, however it ends (normal exit, error, Ctrl-C);
 * and so does every temporary directory, removed then.
 * Output capture and the 'serving' line come from test/support/service-process.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, within, type Exit, type Proc } from '../../test/support/service-process.js';
import { ROOT } from './paths.js';

const live = new Set<ChildProcess>();

/** Remember `child` until it exits; it is SIGKILLed if the bench ends first. */
export function track<C extends ChildProcess>(child: C): C {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export function killAll(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

const scratch = new Set<string>();

/** A new temporary directory, removed when the bench ends if nobody removed it before. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.add(dir);
  return dir;
}

process.on('exit', () => {
  killAll();
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

/** Captured output is capped: a chatty child must not grow the driver without bound. */
const MAX_CAPTURE = 1024 * 1024;

export interface NodeOptions {
  nodeFlags?: string[];
  env?: Record<string, string>;
  /** Open an IPC channel (child_process.fork style): the child can process.send(). */
  ipc?: boolean;
  /** 'advanced': IPC messages are structured clones (NaN and Infinity survive), not JSON. */
  serialization?: 'json' | 'advanced';
}

/** Start `node [flags] script args` with a clean environment (no LOG_LEVEL, GRPC_PORT, NODE_OPTIONS, ...). */
export function startNode(script: string, args: string[] = [], options: NodeOptions = {}): Proc {
  const child = track(
    spawn(process.execPath, [...(options.nodeFlags ?? []), script, ...args], {
      cwd: ROOT,
      env: cleanEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe', ...(options.ipc ? (['ipc'] as const) : [])],
      serialization: options.serialization ?? 'json',
    }),
  );
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    if (out.length < MAX_CAPTURE) out += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    if (err.length < MAX_CAPTURE) err += chunk;
  });
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exited };
}

export function isRunning(proc: Proc): boolean {
  return proc.child.exitCode === null && proc.child.signalCode === null;
}

/** SIGTERM, then SIGKILL if it has not exited within `ms`. */
export async function stopProc(proc: Proc, ms = 5000): Promise<Exit> {
  if (isRunning(proc)) proc.child.kill('SIGTERM');
  try {
    return await within(proc.exited, ms, 'stopping a child process');
  } catch {
    proc.child.kill('SIGKILL');
    return within(proc.exited, 5000, 'killing a child process');
  }
}
