/**
 * A worker process on its own, driven over its IPC channel the way the primary
 * drives it (no cluster needed: the protocol is plain process messages): its
 * start, its answers (metrics, evictions, reloads in two steps), its start-up
 * failures, and how it ends (stop, SIGTERM, the primary gone).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import type { FromWorker, Reply, Request, ToWorker } from '../../src/cluster/protocol.js';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { cleanEnv, ensureBuilt, logLines, ROOT, waitFor, within, type Exit, type Teardowns } from '../support/service-process.js';

t.before(ensureBuilt);

const WORKER = pathToFileURL(join(ROOT, 'dist', 'src', 'cluster', 'worker.js')).href;
const TOKEN = 'worker-token-0123456789abcdefghij';

class Worker {
  readonly child: ChildProcess;
  readonly messages: FromWorker[] = [];
  readonly exited: Promise<Exit>;
  #out = '';
  #id = 0;

  constructor(t: Teardowns) {
    this.child = spawn(process.execPath, ['-e', `import(${JSON.stringify(WORKER)}).then((m) => m.runWorker())`], {
      cwd: ROOT,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (this.#out += chunk));
    this.child.stderr!.resume();
    this.child.on('message', (message: FromWorker) => this.messages.push(message));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    t.teardown(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    });
  }

  stdout(): string {
    return this.#out;
  }

  send(message: ToWorker): void {
    this.child.send(message);
  }

  /** The next message of this type (bounded). */
  next<T extends FromWorker['type']>(type: T, ms = 10_000): Promise<Extract<FromWorker, { type: T }>> {
    const seen = this.messages.filter((m) => m.type === type).length;
    return waitFor(
      () => this.messages.filter((m) => m.type === type)[seen] as Extract<FromWorker, { type: T }> | undefined,
      ms,
      `a "${type}" message`,
    );
  }

  /** A request and its reply. */
  async ask(request: Request): Promise<Reply> {
    const id = (this.#id += 1);
    this.send({ type: 'request', id, request });
    const reply = await waitFor(() => this.messages.find((m) => m.type === 'reply' && m.id === id), 5000, `the reply to ${request.type}`);
    return (reply as { reply: Reply }).reply;
  }

  start(text: string, pin: Record<string, string> = {}): void {
    this.send({ type: 'start', slot: 3, text, source: 'worker.yaml', pin });
  }
}

function config(url: string, identityHeader = 'x-auth-subject', extra = ''): string {
  return `server:
  grpc: {host: 127.0.0.1, port: 0}
  shutdownTimeout: 1000
log:
  level: info
endpoints:
  - name: as
    url: ${url}
    authMethod: none
${extra}policies:
  - name: default
    identityHeader: ${identityHeader}
`;
}

t.test('a worker: hello, start, serving; answers; a reload in two steps; stop', async (t) => {
  const fake = await startFakeAuthorizationServer(answerByToken({ [TOKEN]: { sub: 'alice' } }));
  t.teardown(() => fake.close());
  const worker = new Worker(t);
  await worker.next('hello');
  t.same(await worker.ask({ type: 'metrics' }), { ok: true, metrics: [] }, 'before start: no metrics yet');
  t.same(await worker.ask({ type: 'evict', all: true, announce: true }), { ok: true, evicted: 0, shared: 'none' }, 'before start: nothing cached');

  // The address comes from the pin, not the text (the primary's first configuration decides it).
  worker.start(config(fake.url).replace('host: 127.0.0.1, port: 0', 'host: 0.0.0.0, port: 9'), { GRPC_HOST: '127.0.0.1', GRPC_PORT: '0' });
  // A reload committed while the worker starts: in force once it serves.
  worker.send({ type: 'request', id: 100, request: { type: 'prepare', text: config(fake.url, 'x-auth-early'), source: 'worker.yaml' } });
  worker.send({ type: 'request', id: 101, request: { type: 'commit' } });
  const { port } = await worker.next('serving');
  t.ok(port > 0, `serving on port ${port}`);
  const line = await waitFor(() => logLines(worker.stdout()).find((l) => l.msg === 'worker serving'), 3000, 'its log line');
  t.match(line, { worker: 3, pid: worker.child.pid, grpcPort: port }, 'its log lines carry its slot and pid');

  const envoy = connectEnvoy(`127.0.0.1:${port}`);
  t.teardown(() => envoy.close());
  const check = async () => summarize(await envoy.check({ headers: { authorization: `Bearer ${TOKEN}` }, timeoutMs: 3000 }));
  t.equal((await check()).headers['x-auth-early'], 'alice', 'the configuration committed during start-up is in force');

  const metrics = await worker.ask({ type: 'metrics' });
  const decisions = (metrics as { metrics: Array<{ name: string; values: Array<{ value: number }> }> }).metrics.find(
    (m) => m.name === 'authz_check_decisions_total',
  );
  t.equal(decisions?.values.reduce((sum, v) => sum + v.value, 0), 1, 'its metrics as prom-client JSON');
  t.same(await worker.ask({ type: 'evict', token: TOKEN, announce: true }), { ok: true, evicted: 1, shared: 'none' }, 'evict one token');
  t.same(await worker.ask({ type: 'evict', token: TOKEN, announce: true }), { ok: true, evicted: 0, shared: 'none' }, 'gone');
  await check();
  t.same(await worker.ask({ type: 'evict', all: true, announce: true }), { ok: true, evicted: 1, shared: 'none' }, 'evict all');

  const refused = await worker.ask({ type: 'prepare', text: config(fake.url, 'x-auth-bad', '    bogus: 1\n'), source: 'worker.yaml' });
  t.same(refused, { ok: false, error: 'worker.yaml: endpoints[0].bogus: unknown option' }, 'a bad configuration is refused, naming the key');
  t.same(await worker.ask({ type: 'commit' }), { ok: true }, 'a commit with nothing prepared changes nothing');
  t.equal((await check()).headers['x-auth-early'], 'alice', 'still the configuration in force');

  t.same(await worker.ask({ type: 'prepare', text: config(fake.url, 'x-auth-aborted'), source: 'worker.yaml' }), { ok: true }, 'prepared');
  t.same(await worker.ask({ type: 'abort' }), { ok: true }, 'aborted');
  t.same(await worker.ask({ type: 'commit' }), { ok: true });
  t.equal((await check()).headers['x-auth-early'], 'alice', 'an aborted configuration never comes into force');

  t.same(await worker.ask({ type: 'prepare', text: config(fake.url, 'x-auth-user'), source: 'worker.yaml' }), { ok: true });
  t.equal((await check()).headers['x-auth-early'], 'alice', 'prepared is not in force yet');
  t.same(await worker.ask({ type: 'commit' }), { ok: true });
  t.equal((await check()).headers['x-auth-user'], 'alice', 'committed: in force');

  worker.child.kill('SIGHUP');
  t.same(await worker.ask({ type: 'abort' }), { ok: true }, 'SIGHUP is ignored: the primary reloads');

  worker.send({ type: 'stop' });
  worker.send({ type: 'stop' });
  t.same(await within(worker.exited, 5000, 'exit'), { code: 0, signal: null }, 'stop: drains and exits 0');
  t.ok(logLines(worker.stdout()).some((l) => l.msg === 'worker draining'), 'logged its drain');
});

t.test('start-up failures: the reason to the primary, and the exit code', async (t) => {
  await t.test('an invalid configuration: exit 2', async (t) => {
    const worker = new Worker(t);
    await worker.next('hello');
    worker.start('endpoints: []\n');
    t.match(await worker.next('failed'), { message: 'worker.yaml: endpoints: at least one introspection endpoint is required', exitCode: 2 });
    t.same(await within(worker.exited, 5000, 'exit'), { code: 2, signal: null });
  });

  await t.test('the gRPC port in use: exit 2', async (t) => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const port = (blocker.address() as AddressInfo).port;
    const worker = new Worker(t);
    await worker.next('hello');
    worker.start(config('http://127.0.0.1:9/introspect'), { GRPC_PORT: String(port) });
    t.match(await worker.next('failed'), { message: `server.grpc.port: 127.0.0.1:${port} is already in use`, exitCode: 2 });
    t.same(await within(worker.exited, 5000, 'exit'), { code: 2, signal: null });
  });

  await t.test('anything else: "cannot start", exit 1', async (t) => {
    const worker = new Worker(t);
    await worker.next('hello');
    worker.start(config('http://127.0.0.1:9/introspect'), { GRPC_HOST: '256.0.0.1' });
    const failed = await worker.next('failed');
    t.equal(failed.exitCode, 1);
    t.match(failed.message, /^server\.grpc: cannot listen on 256\.0\.0\.1:0: /);
    t.same(await within(worker.exited, 5000, 'exit'), { code: 1, signal: null });
  });
});

t.test('how a worker ends without a stop message', async (t) => {
  await t.test('SIGTERM before it was started: exit 0 at once', async (t) => {
    const worker = new Worker(t);
    await worker.next('hello');
    worker.child.kill('SIGTERM');
    t.same(await within(worker.exited, 5000, 'exit'), { code: 0, signal: null });
  });

  await t.test('stop while starting: it starts, then drains, never saying it serves', async (t) => {
    // Both messages leave together, and the stop nearly always arrives while the service is
    // starting; on a loaded machine it was once read only after the start had finished (then the
    // worker serves and drains, as for any stop: that run says nothing about this case). So the
    // case is tried up to three times, and every try must exit 0.
    let caught = false;
    for (let attempt = 1; attempt <= 3 && !caught; attempt += 1) {
      const worker = new Worker(t);
      await worker.next('hello');
      worker.start(config('http://127.0.0.1:9/introspect'));
      worker.send({ type: 'stop' });
      t.same(await within(worker.exited, 5000, 'exit'), { code: 0, signal: null }, `attempt ${attempt}: exit 0`);
      caught = !worker.messages.some((m) => m.type === 'serving');
      if (!caught) t.comment(`attempt ${attempt}: the stop arrived after the start had finished`);
    }
    t.ok(caught, 'a stop that arrives while starting: drained without ever saying it serves');
  });

  await t.test('the primary gone (IPC channel closed): drains and exits 0', async (t) => {
    const worker = new Worker(t);
    await worker.next('hello');
    worker.start(config('http://127.0.0.1:9/introspect'));
    await worker.next('serving');
    worker.child.disconnect();
    t.same(await within(worker.exited, 5000, 'exit'), { code: 0, signal: null });
  });

  await t.test('SIGINT while serving: drains and exits 0', async (t) => {
    const worker = new Worker(t);
    await worker.next('hello');
    worker.start(config('http://127.0.0.1:9/introspect'));
    await worker.next('serving');
    worker.child.kill('SIGINT');
    t.same(await within(worker.exited, 5000, 'exit'), { code: 0, signal: null });
  });
});
