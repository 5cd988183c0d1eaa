/**
 * Helpers for tests that run the real program, `node dist/src/main.js`: build
 * dist/ when it is older than src/, spawn with a clean environment, read its
 * JSON log lines, poll the ops HTTP server. Every wait here is bounded.
 *
 * No test-framework imports: the tap Test is only used through `teardown`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = join(ROOT, 'dist', 'src', 'main.js');

/** What these helpers need of a tap Test. */
export interface Teardowns {
  teardown(fn: () => unknown): void;
}

/** Newest modification time of the files under `dir`, in ms. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** dist/ is at least as new as src/ and the other source folders given (tsc writes every output in one run). */
const fresh = (also: readonly string[] = []) =>
  existsSync(MAIN) && statSync(MAIN).mtimeMs >= Math.max(...['src', ...also].map((dir) => newestMtime(join(ROOT, dir))));

/**
 * Build dist/ when it is missing or older than src/ (or the folders in `also`). Test files run in
 * parallel: a lock directory keeps two of them from running tsc at once (one
 * would read files the other is half-way through writing).
 */
export function ensureBuilt(also: readonly string[] = []): void {
  if (fresh(also)) return;
  const lock = join(ROOT, 'dist', '.build-lock');
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  const until = Date.now() + 150_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Someone else is building; a lock older than two minutes was left by a killed run.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 120_000) rmSync(lock, { recursive: true, force: true });
      } catch {
        // gone already
      }
      if (Date.now() > until) throw new Error(`${lock} held for too long`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
      if (fresh(also)) return;
    }
  }
  try {
    if (fresh(also)) return;
    try {
      execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
        cwd: ROOT,
        stdio: 'pipe',
        timeout: 120_000,
      });
    } catch {
      // tsc still emits when some other file has a type error; only a missing program is fatal.
    }
    if (!existsSync(MAIN)) throw new Error(`${MAIN} was not built`);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Variables the tap run sets (or a developer may have) that would override the configuration under test. */
const OVERRIDES = ['LOG_LEVEL', 'GRPC_PORT', 'GRPC_HOST', 'HTTP_PORT', 'HTTP_HOST', 'OPS_PORT', 'OPS_HOST', 'SHUTDOWN_TIMEOUT', 'WORKERS', 'CONFIG_FILE', 'NODE_OPTIONS'];

/** process.env without the variables that would override the configuration under test. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of OVERRIDES) delete env[name];
  return { ...env, ...extra };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<Exit>;
}

export interface RunOptions {
  /**
   * Run Node without what tap adds to every process a test spawns: tap puts
   * @tapjs/processinfo into NODE_OPTIONS (for coverage), and with it
   * signal-exit's handlers for SIGHUP, SIGTERM and the like, which catch a
   * signal the program itself has no handler for yet. Use it where that
   * difference matters; without it the run adds nothing to coverage.
   */
  bare?: boolean;
  /**
   * The test expects the program to die of an error it did not handle. Otherwise
   * such a death (main.ts's "fatal:" line, or V8's "FATAL ERROR:") fails the
   * test at teardown, whatever the test itself asserted: a crash in the child
   * is no unhandled rejection in the test's own process, so tap cannot see it.
   */
  expectFatal?: boolean;
}

const CRASHED = /^(?:fatal: |FATAL ERROR: )/m;

/** Start the program; it is killed at teardown if still running. */
export function run(t: Teardowns, args: string[], env: Record<string, string> = {}, options: RunOptions = {}): Proc {
  const [command, argv] = options.bare
    ? ['/usr/bin/env', ['-u', 'NODE_OPTIONS', process.execPath, MAIN, ...args]]
    : [process.execPath, [MAIN, ...args]];
  const child = spawn(command, argv, { cwd: ROOT, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (!options.expectFatal && CRASHED.test(err)) throw new Error(`the service crashed: ${err.slice(0, 2000)}`);
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Reject after `ms` so that every wait is bounded. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Poll `probe` every 20 ms until it returns something other than undefined; throws after `ms`. */
export async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

export type LogLine = Record<string, unknown>;

/** The JSON log lines of a stream (other lines are skipped). */
export function logLines(text: string): LogLine[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

/** The ports from the 'serving' log line (adminPort: only with an admin token). */
export async function serving(proc: Proc, ms = 10_000): Promise<{ grpcPort: number; opsPort: number; adminPort?: number }> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const line = logLines(proc.stdout()).find((l) => l.msg === 'serving');
    if (line) {
      const ports = { grpcPort: line.grpcPort as number, opsPort: line.opsPort as number };
      return typeof line.adminPort === 'number' ? { ...ports, adminPort: line.adminPort } : ports;
    }
    const { exitCode, signalCode } = proc.child;
    if (exitCode !== null || signalCode !== null) throw new Error(`exited (${exitCode ?? signalCode}) before serving: ${proc.stderr()}`);
    await sleep(20);
  }
  throw new Error(`no 'serving' line within ${ms} ms; stdout: ${proc.stdout()} stderr: ${proc.stderr()}`);
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/** GET http://127.0.0.1:port/path on a fresh connection; rejects with the socket error (e.g. ECONNREFUSED). */
export function httpGet(port: number, path: string, timeoutMs = 2000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** DELETE /cache on an admin port with an admin token and a JSON body ({token} or {all: true}). */
export function deleteCache(port: number, adminToken: string, body: object): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/cache',
        method: 'DELETE',
        agent: false,
        timeout: 5000,
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
      },
      (res) => {
        let answer = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: answer }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('DELETE /cache: no answer within 5000 ms')));
    req.on('error', reject);
    req.end(text);
  });
}

/** Samples of a Prometheus exposition text: `name{labels}` -> value. */
export function samples(text: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    map.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return map;
}

/** authz_config_reloads_total by result, read from /metrics. */
export async function reloadCounts(opsPort: number): Promise<{ success: number | undefined; failure: number | undefined }> {
  const { status, body } = await httpGet(opsPort, '/metrics');
  if (status !== 200) throw new Error(`/metrics answered ${status}`);
  const map = samples(body);
  return {
    success: map.get('authz_config_reloads_total{result="success"}'),
    failure: map.get('authz_config_reloads_total{result="failure"}'),
  };
}

/** A TCP connection attempt: 'connected' or the error code (e.g. ECONNREFUSED). */
export function tryConnect(port: number, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(error.code ?? error.message);
    });
  });
}

/** A port that was free a moment ago (bound on 127.0.0.1 and released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
