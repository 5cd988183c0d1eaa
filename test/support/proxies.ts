/**
 * Real proxies for the HTTP mode's end-to-end tests: nginx and Caddy as child
 * processes on free loopback ports, each with a prefix folder of its own
 * (config, temp paths, pid, HOME), logging to stderr; and an echo upstream
 * that answers with the headers it received. Everything started here is
 * stopped by the teardown registered next to it, by pid. Every wait is bounded.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, tryConnect, type Teardowns } from './service-process.js';

/** The binary to run: `env` when set, else the first of `candidates` that runs. null: not installed. */
export function findBinary(env: string | undefined, candidates: readonly string[], versionFlag: string): string | null {
  for (const candidate of env ? [env] : candidates) {
    const probe = spawnSync(candidate, [versionFlag], { encoding: 'utf8', timeout: 10_000 });
    if (!probe.error && probe.status === 0) return candidate;
  }
  return null;
}

export const NGINX = findBinary(process.env.NGINX, ['nginx', '/usr/sbin/nginx'], '-v');
export const CADDY = findBinary(process.env.CADDY, ['caddy', '/usr/bin/caddy'], 'version');

export interface Echo {
  readonly port: number;
  /** Headers of every request received, in order. */
  readonly received: IncomingHttpHeaders[];
}

/** An upstream answering 200 with a JSON of the request's method, URL and headers. */
export async function startEcho(t: Teardowns): Promise<Echo> {
  const received: IncomingHttpHeaders[] = [];
  const server = createServer((request, response) => {
    received.push(request.headers);
    const body = JSON.stringify({ method: request.method, url: request.url, headers: request.headers });
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { port: (server.address() as AddressInfo).port, received };
}

export interface ProxyProcess {
  readonly port: number;
  readonly prefix: string;
  /** What it wrote to stderr and stdout so far (for failure messages). */
  output(): string;
}

/** A folder of its own under the system temp dir, removed at teardown. */
export function prefixFolder(t: Teardowns, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `authz-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Spawn, wait until `port` takes connections (within 10 s), and register a
 * teardown that stops the child by its pid (SIGTERM, then SIGKILL after 3 s).
 */
export async function spawnProxy(
  t: Teardowns,
  command: string,
  args: string[],
  options: { port: number; prefix: string; env?: NodeJS.ProcessEnv },
): Promise<ProxyProcess> {
  let output = '';
  const child: ChildProcess = spawn(command, args, { cwd: options.prefix, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
  child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    process.kill(child.pid, 'SIGTERM');
    const killer = setTimeout(() => {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, 3000);
    await exited;
    clearTimeout(killer);
  });
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${command} exited with ${child.exitCode}: ${output}`);
    if ((await tryConnect(options.port, 500)) === 'connected') break;
    if (Date.now() > until) throw new Error(`${command} did not listen on ${options.port} within 10 s: ${output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { port: options.port, prefix: options.prefix, output: () => output };
}

/** The shipped text with one string replaced `times` times; fails when the file no longer has it so. */
export function substitute(file: string, text: string, from: string, to: string, times = 1): string {
  const count = text.split(from).length - 1;
  if (count !== times) throw new Error(`${file}: expected "${from}" ${times} time(s), found it ${count} times`);
  return text.replaceAll(from, to);
}

export interface NginxSite {
  /** The repository root (deploy/nginx/ is read from there). */
  root: string;
  prefix: string;
  port: number;
  authzPort: number;
  upstreamPort: number;
  /** Extra text inside http {} (the bench's direct server block). */
  extra?: string;
  /** Policy names to put in place of the shipped ones (default, admin). */
  policies?: { default?: string; admin?: string };
}

/**
 * Write nginx.conf in `prefix`: deploy/nginx/authz.conf as shipped, its ports
 * changed, included in a main config of the prefix's own (temp paths, pid,
 * stderr log, one process). Returns the nginx command line.
 */
export function writeNginxConfig(site: NginxSite): string[] {
  const shipped = join(site.root, 'deploy', 'nginx');
  const file = 'deploy/nginx/authz.conf';
  let text = readFileSync(join(shipped, 'authz.conf'), 'utf8');
  text = substitute(file, text, 'server 127.0.0.1:9002;', `server 127.0.0.1:${site.authzPort};`);
  text = substitute(file, text, 'server 127.0.0.1:8080;', `server 127.0.0.1:${site.upstreamPort};`);
  text = substitute(file, text, 'listen 80;', `listen 127.0.0.1:${site.port};`);
  if (site.policies?.default) text = substitute(file, text, '/nginx/default;', `/nginx/${site.policies.default};`);
  if (site.policies?.admin) text = substitute(file, text, '/nginx/admin;', `/nginx/${site.policies.admin};`);
  const { prefix } = site;
  writeFileSync(join(prefix, 'authz.conf'), text);
  mkdirSync(join(prefix, 'snippets'), { recursive: true });
  for (const name of ['authz-subrequest.conf', 'authz-protected.conf']) copyFileSync(join(shipped, 'snippets', name), join(prefix, 'snippets', name));
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  writeFileSync(
    join(prefix, 'nginx.conf'),
    [
      // As root, workers would run as nobody, who cannot read this folder.
      process.getuid?.() === 0 ? 'user root;' : '',
      'daemon off;',
      'master_process off;',
      `pid ${prefix}/nginx.pid;`,
      'error_log stderr warn;',
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${prefix}/tmp/${kind};`),
      `  include ${prefix}/authz.conf;`,
      site.extra ?? '',
      '}',
    ].join('\n'),
  );
  return ['-p', `${prefix}/`, '-c', join(prefix, 'nginx.conf'), '-e', 'stderr'];
}

export { freePort };
