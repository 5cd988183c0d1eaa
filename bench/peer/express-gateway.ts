/**
 * The peer: Express Gateway 1.16 with its oauth2-introspect policy (ttl 60,
 * cache in its emulated Redis) and a terminate policy answering 200, against
 * the same fake authorization server, driven by `h2load --h1` with a cached
 * token. Installed on demand into bench/.peer/ (git-ignored), never as a
 * project dependency; when it cannot be installed or started the bench goes on.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, sleep, tryConnect } from '../../test/support/service-process.js';
import { ROOT } from '../support/paths.js';
import { bearerToken } from '../check-request.js';
import { runH2load, type H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { isRunning, scratchDir, startNode, stopProc, track } from '../support/processes.js';
import { IDP_CLIENT_ID, IDP_CLIENT_SECRET } from '../support/service.js';

export const PEER_DIR = join(ROOT, 'bench', '.peer');
const PACKAGE = 'express-gateway';
const WANTED = '1.16';

export type Peer =
  | { available: false; reason: string }
  | { available: true; name: string; result: H2loadResult; concurrency: number; logging: string; cpuMsPerCheck: number };

function installedVersion(): string | null {
  try {
    const pkg = JSON.parse(readFileSync(join(PEER_DIR, 'node_modules', PACKAGE, 'package.json'), 'utf8')) as { version: string };
    return pkg.version.startsWith(`${WANTED}.`) ? pkg.version : null;
  } catch {
    return null;
  }
}

async function ensureInstalled(): Promise<string> {
  const present = installedVersion();
  if (present) return present;
  mkdirSync(PEER_DIR, { recursive: true });
  const manifest = join(PEER_DIR, 'package.json');
  if (!existsSync(manifest)) writeFileSync(manifest, `${JSON.stringify({ name: 'bench-peer', private: true }, null, 2)}\n`);
  process.stderr.write(`installing ${PACKAGE}@${WANTED} into ${PEER_DIR} (once)\n`);
  await new Promise<void>((resolve, reject) => {
    const child = execFile(
      'npm',
      ['install', '--no-audit', '--no-fund', `${PACKAGE}@${WANTED}`],
      { cwd: PEER_DIR, timeout: 300_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
      (error, _out, err) => (error ? reject(new Error(`npm install failed: ${error.message} ${err.slice(-500)}`)) : resolve()),
    );
    track(child);
  });
  const version = installedVersion();
  if (!version) throw new Error(`${PACKAGE}@${WANTED} is not in ${PEER_DIR} after npm install`);
  return version;
}

function gatewayConfig(port: number, idpUrl: string): string {
  const basic = Buffer.from(`${IDP_CLIENT_ID}:${IDP_CLIENT_SECRET}`).toString('base64');
  return [
    'http:',
    `  port: ${port}`,
    '  hostname: 127.0.0.1',
    'apiEndpoints:',
    '  api:',
    "    host: '*'",
    "    scopes: ['orders:read']",
    'policies:',
    '  - oauth2-introspect',
    '  - terminate',
    'pipelines:',
    '  bench:',
    '    apiEndpoints: [api]',
    '    policies:',
    '      - oauth2-introspect:',
    '          - action:',
    `              endpoint: "${idpUrl}"`,
    `              authorization_value: "Basic ${basic}"`,
    '              ttl: 60',
    '      - terminate:',
    '          - action:',
    '              statusCode: 200',
    '              message: ok',
    '',
  ].join('\n');
}

/** The headers of the HTTP request Envoy would have received, as in check-request.ts. */
function requestHeaders(token: string): string[] {
  return [
    `authorization: Bearer ${token}`,
    'user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
    'accept: application/json, text/plain, */*',
    'cookie: session=3f6c1d0e9b8a4c2e; _ga=GA1.2.1234567890.1700000000; theme=dark; consent=analytics%3D1%26ads%3D0',
    'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    'x-forwarded-for: 203.0.113.195, 10.1.2.3',
    'x-request-id: b0a3c2e4-5f61-4c8e-9d2a-7e4f1a6b3c90',
  ];
}

export async function measurePeer(idp: Idp, settings: Settings): Promise<Peer> {
  let version: string;
  try {
    version = await ensureInstalled();
  } catch (error) {
    return { available: false, reason: (error as Error).message.split('\n')[0]!.slice(0, 200) };
  }
  const pkgDir = join(PEER_DIR, 'node_modules', PACKAGE);
  const dir = scratchDir('authz-bench-eg-');
  const port = await freePort();
  cpSync(join(pkgDir, 'lib', 'config', 'models'), join(dir, 'models'), { recursive: true });
  copyFileSync(join(pkgDir, 'lib', 'config', 'system.config.yml'), join(dir, 'system.config.yml'));
  writeFileSync(join(dir, 'gateway.config.yml'), gatewayConfig(port, idp.url));
  writeFileSync(join(dir, 'run.cjs'), 'require(process.argv[2])().load(process.argv[3]).run();\n');
  const proc = startNode(join(dir, 'run.cjs'), [pkgDir, dir], { env: { LOG_LEVEL: 'warn', EG_DB_EMULATE: 'true' } });
  try {
    const until = Date.now() + 30_000;
    while ((await tryConnect(port, 200)) !== 'connected') {
      if (!isRunning(proc)) return { available: false, reason: `express-gateway exited: ${proc.stderr().slice(-300)}` };
      if (Date.now() > until) return { available: false, reason: 'express-gateway did not listen within 30 s' };
      await sleep(50);
    }
    const token = bearerToken('bench-peer');
    const url = `http://127.0.0.1:${port}/api/v1/orders/42?expand=items&page=2`;
    // Correctness: a token is let through (and cached), no token is refused.
    const allowed = await request(url, { headers: { authorization: `Bearer ${token}` } });
    const allowedBody = await allowed.body.text();
    const refused = await request(url);
    await refused.body.dump();
    if (allowed.statusCode !== 200 || allowedBody !== 'ok' || refused.statusCode !== 401) {
      throw new Error(`express-gateway answered ${allowed.statusCode} with a token and ${refused.statusCode} without`);
    }
    const callsBefore = await idp.count();
    const concurrency = settings.clients * settings.streams;
    // HTTP/1.1 without pipelining: as many connections as the gRPC runs have streams in flight.
    const result = await runH2load({
      url,
      headers: requestHeaders(token),
      clients: concurrency,
      streams: 1,
      durationS: settings.durationS,
      warmUpS: settings.warmUpS,
      h1: true,
      cpuPid: proc.child.pid!,
    });
    const calls = (await idp.count()) - callsBefore;
    const other = result.statuses['3xx']! + result.statuses['4xx']! + result.statuses['5xx']!;
    if (result.failed > 0 || result.errored > 0 || other > 0 || result.succeeded === 0) {
      throw new Error(`express-gateway: ${other} of ${result.done} requests not answered 200, ${result.failed + result.errored} failed`);
    }
    if (calls > 0) throw new Error(`express-gateway: ${calls} introspection calls for a cached token`);
    return {
      available: true,
      name: `${PACKAGE} ${version}`,
      result,
      concurrency,
      logging: 'LOG_LEVEL=warn',
      cpuMsPerCheck: result.cpu?.msPerRequest ?? Number.NaN,
    };
  } finally {
    await stopProc(proc);
    rmSync(dir, { recursive: true, force: true });
  }
}
