/**
 * The HTTP mode (issue 16, item 6):
 * - its cached allow (Envoy http_service contract) against a plain node:http
 *   server answering 200 with the same headers, both at saturation over
 *   HTTP/1.1 (h2load --h1, one request at a time per connection), rounds
 *   interleaved, medians reported;
 * - what a user of nginx pays: nginx -> service -> upstream against nginx ->
 *   upstream alone, open loop at a fixed rate, p50/p99. nginx runs
 *   deploy/nginx/ as shipped; without nginx that part reports "not available".
 */
import { bearerToken } from '../check-request.js';
import { runH2load, type H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import { serving, type Proc } from '../../test/support/service-process.js';
import { plainRequest } from '../../test/support/http-client.js';
import { NGINX, freePort, spawnProxy, writeNginxConfig } from '../../test/support/proxies.js';
import type { Idp } from '../support/idp.js';
import { benchScript, ROOT } from '../support/paths.js';
import { scratchDir, startNode, stopProc } from '../support/processes.js';
import { startService } from '../support/service.js';
import { assertClean } from './load.js';

/** The fixed total rate of the nginx runs, requests/s. */
export const NGINX_RATE = 1000;

export interface HttpMode {
  cached: H2loadResult;
  plain: H2loadResult;
  rounds: { cached: number[]; plain: number[] };
  /** CPU ms per request of the service and of the plain server, median over the rounds. */
  cpuMsPerCheck: { cached: number; plain: number };
  nginx:
    | { available: false; reason: string }
    | { available: true; rate: number; direct: H2loadResult; authorized: H2loadResult };
}

/** Every answer of a run that should allow must be an allow. */
function refusals(run: H2loadResult, what: string): void {
  const bad = (run.statuses['4xx'] ?? 0) + (run.statuses['5xx'] ?? 0);
  if (bad > 0) throw new Error(`${what}: ${bad} answers were not 2xx: ${JSON.stringify(run.statuses)}`);
}

const cpuOf = (run: H2loadResult) => run.cpu?.msPerRequest ?? Number.NaN;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function h1Load(port: number, path: string, headers: string[], settings: Settings, totalRps?: number, cpuPid?: number): Promise<H2loadResult> {
  return runH2load({
    url: `http://127.0.0.1:${port}${path}`,
    headers,
    clients: settings.clients,
    streams: 1,
    durationS: settings.durationS,
    warmUpS: settings.warmUpS,
    h1: true,
    cpuPid,
    ...(totalRps === undefined ? {} : { rpsPerClient: totalRps / settings.clients }),
  });
}

export async function measureHttpMode(idp: Idp, settings: Settings): Promise<HttpMode> {
  const cleanups: Array<() => unknown> = [];
  const teardowns = { teardown: (fn: () => unknown) => cleanups.push(fn) };
  try {
    const httpPort = await freePort();
    const service = await startService({ idpUrl: idp.url, httpPort });
    cleanups.push(() => service.stop());
    const token = bearerToken('bench-cached');
    // h2load adds its own Host; :authority replaces it.
    const headers = [':authority: api.example.com', `authorization: Bearer ${token}`];
    const path = '/envoy/api/orders/7';
    const first = await plainRequest(httpPort, { path, headers: [['host', 'api.example.com'], ['authorization', `Bearer ${token}`]] });
    if (first.status !== 200) throw new Error(`the service answered ${first.status} to the cached allow: ${first.body}`);
    // The baseline answers with the very headers of the service's allow.
    const allowHeaders = [...first.headers].filter(([name]) => !['content-length', 'date', 'connection', 'keep-alive'].includes(name)).flatMap(([name, values]) => values.map((value) => [name, value]));
    const plainProc: Proc = startNode(benchScript('baselines/http-server.js'), [], { env: { BENCH_HTTP_HEADERS: JSON.stringify(allowHeaders) } });
    cleanups.push(() => stopProc(plainProc));
    const plainPort = (await serving(plainProc, 15_000)).grpcPort;

    const runs = { cached: [] as H2loadResult[], plain: [] as H2loadResult[] };
    for (let round = 0; round < settings.rounds; round += 1) {
      const cached = await h1Load(httpPort, path, headers, settings, undefined, service.proc.child.pid!);
      assertClean(cached, 'http cached allow');
      refusals(cached, 'http cached allow');
      runs.cached.push(cached);
      const plain = await h1Load(plainPort, path, headers, settings, undefined, plainProc.child.pid!);
      assertClean(plain, 'http baseline');
      runs.plain.push(plain);
    }
    const pick = (list: H2loadResult[]) => {
      const m = median(list.map((r) => r.reqPerSec));
      return list.find((r) => r.reqPerSec === m)!;
    };
    const result: HttpMode = {
      cached: pick(runs.cached),
      plain: pick(runs.plain),
      rounds: { cached: runs.cached.map((r) => r.reqPerSec), plain: runs.plain.map((r) => r.reqPerSec) },
      cpuMsPerCheck: { cached: median(runs.cached.map(cpuOf)), plain: median(runs.plain.map(cpuOf)) },
      nginx: { available: false, reason: 'nginx is not installed' },
    };

    if (NGINX !== null) {
      const upstream: Proc = startNode(benchScript('baselines/http-server.js'));
      cleanups.push(() => stopProc(upstream));
      const upstreamPort = (await serving(upstream, 15_000)).grpcPort;
      const [port, directPort] = [await freePort(), await freePort()];
      const prefix = scratchDir('authz-bench-nginx-');
      const direct = `  server { listen 127.0.0.1:${directPort}; location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://application; } }`;
      const args = writeNginxConfig({ root: ROOT, prefix, port, authzPort: httpPort, upstreamPort, extra: direct, policies: { default: 'api' } });
      await spawnProxy(teardowns, NGINX, args, { port, prefix });
      const nginxHeaders = [':authority: shop.example.com', `authorization: Bearer ${token}`];
      const check = await plainRequest(port, { path: '/orders/7', headers: [['host', 'shop.example.com'], ['authorization', `Bearer ${token}`]] });
      if (check.status !== 200) throw new Error(`nginx -> service answered ${check.status}: ${check.body.slice(0, 200)}`);
      const directRun = await h1Load(directPort, '/orders/7', nginxHeaders, settings, NGINX_RATE);
      assertClean(directRun, 'nginx direct');
      const authorized = await h1Load(port, '/orders/7', nginxHeaders, settings, NGINX_RATE);
      assertClean(authorized, 'nginx with auth_request');
      refusals(authorized, 'nginx with auth_request');
      result.nginx = { available: true, rate: NGINX_RATE, direct: directRun, authorized };
    }
    return result;
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}
