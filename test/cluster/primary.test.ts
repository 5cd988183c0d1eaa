// A cluster's primary with in-process fake workers, each holding a real
// Metrics registry: /metrics adds the workers up (and labels process metrics),
// /readyz follows the workers, DELETE /cache asks them all, a reload reaches
// all or none, and start-up and shutdown failures are reported.
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { ListenError } from '../../src/app.js';
import { startCluster, type Cluster } from '../../src/cluster/primary.js';
import type { Reply, Request, ToWorker } from '../../src/cluster/protocol.js';
import { StartError } from '../../src/cluster/supervisor.js';
import { buildConfig, ConfigError, type Config } from '../../src/config/load.js';
import type { CircuitState } from '../../src/introspection/circuit-breaker.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';

const ADMIN = 'primary-admin-token-0123456789';

function config(extra: { workers?: number; opsPort?: number; admin?: boolean; shutdownTimeout?: number } = {}): Config {
  return buildConfig(
    {
      server: {
        grpc: { host: '127.0.0.1', port: 0 },
        ops: { host: '127.0.0.1', port: extra.opsPort ?? 0 },
        admin: { host: '127.0.0.1', port: 0 },
        workers: extra.workers ?? 2,
        shutdownTimeout: extra.shutdownTimeout ?? 1000,
      },
      ...(extra.admin === false ? {} : { admin: { token: ADMIN } }),
      endpoints: [{ name: 'as', url: 'http://127.0.0.1:9/introspect', authMethod: 'none' }],
    },
    'test.yaml',
    { env: {} },
  );
}

interface FakeOptions {
  /** Answer a request differently (undefined: the default answer). */
  answer?(request: Request): Reply | undefined | 'silence';
  /** Do not serve: fail start-up with this. */
  fail?: { message: string; exitCode: number };
  ignoreStop?: boolean;
  circuit?: CircuitState;
  cacheEntries?: number;
}

let pids = 2000;

/** A worker in this process: a real Metrics, the protocol, and a record of what it was told. */
class FakeWorker extends EventEmitter {
  readonly process = { pid: (pids += 1) };
  readonly requests: Request[] = [];
  readonly received: ToWorker[] = [];
  readonly metrics: Metrics;
  readonly options: FakeOptions;
  alive = true;

  constructor(options: FakeOptions) {
    super();
    this.options = options;
    this.metrics = new Metrics({
      cacheEntries: () => options.cacheEntries ?? 0,
      circuitStates: () => [['as', options.circuit ?? 'closed']],
    });
    setImmediate(() => this.emit('message', { type: 'hello' }));
  }

  send(message: ToWorker): boolean {
    this.received.push(message);
    setImmediate(() => void this.#receive(message));
    return true;
  }

  async #receive(message: ToWorker): Promise<void> {
    if (!this.alive) return;
    if (message.type === 'start') {
      if (this.options.fail) {
        this.emit('message', { type: 'failed', ...this.options.fail });
        this.die(this.options.fail.exitCode);
      } else this.emit('message', { type: 'serving', port: 7001 });
      return;
    }
    if (message.type === 'stop') {
      if (!this.options.ignoreStop) this.die(0);
      return;
    }
    this.requests.push(message.request);
    let reply = this.options.answer?.(message.request);
    if (reply === 'silence') return;
    if (reply === undefined) {
      if (message.request.type === 'metrics') reply = { ok: true, metrics: await this.metrics.registry.getMetricsAsJSON() };
      else if (message.request.type === 'evict') reply = { ok: true, evicted: 'all' in message.request ? 5 : 1 };
      else reply = { ok: true };
    }
    this.emit('message', { type: 'reply', id: message.id, reply });
  }

  kill(signal = 'SIGTERM'): void {
    this.die(null, signal);
  }

  die(code: number | null, signal: string | null = null): void {
    if (!this.alive) return;
    this.alive = false;
    setImmediate(() => this.emit('exit', code, signal));
  }
}

interface Harness {
  cluster: Cluster;
  workers: FakeWorker[];
  ops: string;
  /** The admin listener's URL; null when none was started. */
  admin: string | null;
  logged: Array<Record<string, unknown>>;
}

async function start(t: Test, options: FakeOptions[] = [], initial = config(), restartDelayMs = 60_000): Promise<Harness> {
  const workers: FakeWorker[] = [];
  const logged: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (line: string) => logged.push(JSON.parse(line) as Record<string, unknown>) });
  const cluster = await startCluster(initial, 'text-1', 'test.yaml', logger, {
    fork: () => {
      const worker = new FakeWorker(options[workers.length] ?? {});
      workers.push(worker);
      return worker;
    },
    restart: { restartDelayMs },
  });
  t.teardown(() => cluster.stop());
  const admin = cluster.admin ? `http://127.0.0.1:${cluster.admin.port}` : null;
  return { cluster, workers, ops: `http://127.0.0.1:${cluster.ops.port}`, admin, logged };
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await request(url);
  return { status: response.statusCode, body: await response.body.text() };
}

async function evict(ops: string, query = '', token = ADMIN): Promise<{ status: number; body: unknown }> {
  const response = await request(`${ops}/cache${query}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ token: 'some-access-token' }),
  });
  return { status: response.statusCode, body: await response.body.json() };
}

function parse(text: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    map.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return map;
}

t.test('/metrics: the workers added up, process metrics per process', async (t) => {
  const { cluster, workers, ops } = await start(t, [
    { cacheEntries: 3, circuit: 'closed' },
    { cacheEntries: 4, circuit: 'open' },
  ]);
  t.equal(cluster.grpc.port, 7001, 'the port the workers reported');
  const allow = { allow: true, reason: 'ok', policy: 'default', cache: 'miss' } as never;
  workers[0]!.metrics.recordDecision(allow, 0.0002);
  workers[0]!.metrics.recordDecision(allow, 0.003);
  workers[1]!.metrics.recordDecision(allow, 0.0002);
  workers[0]!.metrics.configLoadedAt.set(100);
  workers[1]!.metrics.configLoadedAt.set(200);
  cluster.metrics.configReloads.inc({ result: 'success' });

  const { status, body } = await get(`${ops}/metrics`);
  t.equal(status, 200);
  const metrics = parse(body);
  t.equal(metrics.get('authz_check_decisions_total{decision="allow",reason="ok",policy="default",transport="grpc"}'), 3, 'counters: summed');
  t.equal(metrics.get('authz_cache_lookups_total{result="miss"}'), 3);
  t.equal(metrics.get('authz_check_duration_seconds_count'), 3, 'histogram count summed');
  t.equal(metrics.get('authz_check_duration_seconds_bucket{le="0.00025"}'), 2, 'buckets summed');
  t.equal(metrics.get('authz_check_duration_seconds_bucket{le="0.005"}'), 3);
  t.ok(Math.abs(metrics.get('authz_check_duration_seconds_sum')! - 0.0034) < 1e-9, 'sums summed');
  t.equal(metrics.get('authz_cache_entries'), 7, 'cache entries: summed');
  t.equal(metrics.get('authz_introspection_circuit_state{endpoint="as"}'), 2, 'circuit state: the worst');
  t.equal(metrics.get('authz_config_last_success_timestamp_seconds'), 100, 'configuration time: the earliest');
  t.equal([...metrics].filter(([name]) => name.startsWith('authz_build_info')).map(([, v]) => v).join(), '1', 'build info: 1');
  t.equal(metrics.get('authz_config_reloads_total{result="success"}'), 1, 'reloads: the primary\'s count');
  t.equal(metrics.get('authz_workers_serving'), 2);
  t.equal(metrics.get('authz_worker_restarts_total'), 0);
  for (const worker of ['1', '2', 'primary']) t.ok(metrics.has(`process_start_time_seconds{worker="${worker}"}`), `process_start_time_seconds of ${worker}`);
  t.equal(body.match(/^# HELP authz_check_decisions_total /gm)?.length, 1, 'one HELP per metric');

  // A worker that does not answer in time is left out (after 2 s), the rest still served.
  workers[1]!.options.answer = (r) => (r.type === 'metrics' ? 'silence' : undefined);
  const partial = parse((await get(`${ops}/metrics`)).body);
  t.equal(partial.get('authz_check_decisions_total{decision="allow",reason="ok",policy="default",transport="grpc"}'), 2, 'only worker 1 counted');
  t.notOk(partial.has('process_start_time_seconds{worker="2"}'), 'worker 2 left out');
});

t.test('/readyz follows the workers; /healthz stays ok', async (t) => {
  const { workers, ops, logged } = await start(t);
  t.same(await get(`${ops}/readyz`), { status: 200, body: 'ready\n' });
  workers[1]!.die(1);
  const deadline = Date.now() + 2000;
  while (!logged.some((l) => l.msg === 'worker exited; restarting it') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  t.same(await get(`${ops}/readyz`), { status: 503, body: 'not ready: 1 of 2 workers serving\n' });
  t.same(await get(`${ops}/healthz`), { status: 200, body: 'ok\n' }, 'alive all the same');
  t.equal(parse((await get(`${ops}/metrics`)).body).get('authz_worker_restarts_total'), 1, 'the restart counted');
});

t.test('DELETE /cache: checked in the primary, sent to every worker, the total answered', async (t) => {
  const { workers, ops, admin, logged } = await start(t);
  t.equal((await get(`${ops}/cache`)).status, 404, 'not on the ops port, which Prometheus reaches');
  t.same(await evict(admin!), { status: 200, body: { evicted: 2 } }, 'one endpoint at each worker');
  t.same(await evict(admin!, '?all=true'), { status: 200, body: { evicted: 10 } }, 'all: the sum of the entries');
  t.same(
    workers.map((w) => w.requests.map((r) => (r.type === 'evict' ? ('all' in r ? 'all' : r.token) : r.type))),
    [
      ['some-access-token', 'all'],
      ['some-access-token', 'all'],
    ],
    'each worker was asked both',
  );
  t.equal((await evict(admin!, '', 'wrong-admin-token-0123456789')).status, 401, 'a wrong admin token is refused by the primary');
  t.equal(workers[0]!.requests.length, 2, 'without asking the workers');

  workers[1]!.options.answer = () => ({ ok: false, error: 'boom' });
  t.same(
    await evict(admin!),
    { status: 503, body: { error: 'unavailable', error_description: 'not every cache could be reached; try again' } },
    'a worker that fails: 503, so the caller retries',
  );
  t.same(await evict(admin!, '?all=true'), { status: 503, body: { error: 'unavailable', error_description: 'not every cache could be reached; try again' } });
  t.match(logged.find((l) => l.msg === 'cache eviction incomplete'), { level: 'error', err: 'worker 2: boom' });
  const metrics = parse((await get(`${ops}/metrics`)).body);
  t.equal(metrics.get('authz_cache_admin_evictions_total{scope="token"}'), 1, 'only the completed evictions are counted');
  t.equal(metrics.get('authz_cache_admin_evictions_total{scope="all"}'), 1);
});

t.test('no admin token: no admin listener, and DELETE /cache does not exist', async (t) => {
  const { ops, admin } = await start(t, [], config({ admin: false }));
  t.equal(admin, null, 'nothing listens for it');
  t.equal((await get(`${ops}/cache`)).status, 404, 'the ops port has no admin route');
});

t.test('reload: prepared at every worker, then committed; one refusal aborts it everywhere', async (t) => {
  const { cluster, workers } = await start(t);
  const next = config({ workers: 3 });
  t.same(await cluster.reload(next, 'text-2'), ['server.workers'], 'a change of workers waits for a restart');
  t.equal(cluster.config, next, 'the new configuration is in force');
  t.same(
    workers.map((w) => w.requests.map((r) => r.type)),
    [
      ['prepare', 'commit'],
      ['prepare', 'commit'],
    ],
  );
  t.match(workers[0]!.requests[0], { type: 'prepare', text: 'text-2', source: 'test.yaml' });

  workers[1]!.options.answer = (r) => (r.type === 'prepare' ? { ok: false, error: 'test.yaml: endpoints[0].clientSecretFile: cannot read /s: ENOENT' } : undefined);
  await t.rejects(
    cluster.reload(config(), 'text-3'),
    new ConfigError('worker 2: test.yaml: endpoints[0].clientSecretFile: cannot read /s: ENOENT'),
    'the refusal, naming the worker',
  );
  t.equal(cluster.config, next, 'the previous configuration stays');
  t.same(
    workers.map((w) => w.requests.slice(2).map((r) => r.type)),
    [
      ['prepare', 'abort'],
      ['prepare', 'abort'],
    ],
    'every worker was told to drop what it prepared',
  );
});

t.test('a restarted worker starts with the configuration in force, on the pinned address', async (t) => {
  const { cluster, workers, ops } = await start(t, [], config(), 1);
  await cluster.reload(config(), 'text-2');
  workers[0]!.die(1);
  const deadline = Date.now() + 2000;
  while (workers.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  while ((await get(`${ops}/readyz`)).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  t.same(workers[2]!.received[0], {
    type: 'start',
    slot: 1,
    text: 'text-2',
    source: 'test.yaml',
    pin: { GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', HTTP_HOST: '0.0.0.0', HTTP_PORT: '9002' },
  });
  t.equal((await get(`${ops}/readyz`)).status, 200, 'ready again');
});

t.test('start-up failures', async (t) => {
  await t.test('the ops port in use: ListenError naming server.ops', async (t) => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const port = (blocker.address() as AddressInfo).port;
    const error = await start(t, [], config({ opsPort: port })).catch((e: unknown) => e);
    t.type(error, ListenError);
    t.match(error, { key: 'server.ops', inUse: true, message: `server.ops.port: 127.0.0.1:${port} is already in use` });
  });

  await t.test('a worker that cannot start: its reason, and the ops port closed again', async (t) => {
    const opsPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const error = await start(t, [{}, { fail: { message: 'server.grpc.port: 127.0.0.1:1 is already in use', exitCode: 2 } }], config({ opsPort })).catch(
      (e: unknown) => e,
    );
    t.same(error, new StartError('server.grpc.port: 127.0.0.1:1 is already in use', 2));
    const again = createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(opsPort, '127.0.0.1', resolve);
    });
    again.close();
    t.pass('the ops port is free again');
  });
});

t.test('stop: /readyz draining, every worker told; one that will not exit is killed after shutdownTimeout', async (t) => {
  const { cluster, workers, ops, logged } = await start(t, [{}, { ignoreStop: true }], config({ shutdownTimeout: 0 }));
  const stopping = cluster.stop();
  t.same(await get(`${ops}/readyz`), { status: 503, body: 'not ready: draining\n' });
  await stopping;
  t.same(workers.map((w) => w.alive), [false, false], 'both gone');
  t.match(logged.find((l) => l.msg === 'workers still running after shutdownTimeout were killed'), { level: 'warn', killed: 1 });
  t.equal(cluster.stop(), cluster.stop(), 'stop() again is the same stop');
});
