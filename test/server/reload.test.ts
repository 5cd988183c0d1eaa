/**
 * Configuration reloads of the real process: on a change of the file (no
 * signal), on SIGHUP, and through a Kubernetes-style ConfigMap symlink swap.
 * A valid file is put in force for the next Check; an invalid one changes
 * nothing; server settings wait for a restart; no Check fails meanwhile.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer, type FakeAuthorizationServer } from '../support/fake-authorization-server.js';
import {
  ensureBuilt,
  freePort,
  logLines,
  reloadCounts,
  run,
  serving,
  sleep,
  tryConnect,
  waitFor,
  within,
  type LogLine,
  type Proc,
  type Teardowns,
} from '../support/service-process.js';

t.before(ensureBuilt);

const root = mkdtempSync(join(tmpdir(), 'authz-reload-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => {
  const dir = join(root, `case-${(dirs += 1)}`);
  mkdirSync(dir);
  return dir;
};

const TOKEN = 'reload-token-0123456789abcdefghij';
const secret = (label: string) => `${label}-${randomBytes(12).toString('hex')}`;
const basic = (id: string, password: string) => `Basic ${Buffer.from(`${id}:${password}`).toString('base64')}`;

/** An endpoint that knows TOKEN as `sub`; with `delayMs`, every answer takes that long (Checks stay in flight). */
async function fakeServer(t: Teardowns, sub: string, delayMs = 0): Promise<FakeAuthorizationServer> {
  const answer = answerByToken({ [TOKEN]: { sub } });
  const fake = await startFakeAuthorizationServer(async (request) => ({ ...(await answer(request)), delayMs }));
  t.teardown(() => fake.close());
  return fake;
}

interface Service {
  proc: Proc;
  envoy: EnvoyClient;
  grpcPort: number;
  opsPort: number;
  /** Log lines with this msg, in order. */
  logs(msg: string): LogLine[];
  /** Wait (bounded) until there are `count` log lines with this msg; returns the last. */
  waitLog(msg: string, count: number, ms?: number): Promise<LogLine>;
}

async function startService(t: Teardowns, configPath: string): Promise<Service> {
  const proc = run(t, ['--config', configPath]);
  const { grpcPort, opsPort } = await serving(proc);
  const envoy = connectEnvoy(`127.0.0.1:${grpcPort}`);
  t.teardown(() => envoy.close());
  const logs = (msg: string) => logLines(proc.stdout()).filter((line) => line.msg === msg);
  return {
    proc,
    envoy,
    grpcPort,
    opsPort,
    logs,
    waitLog: (msg, count, ms = 2000) =>
      waitFor(() => logs(msg)[count - 1], ms, `${count} "${msg}" log line(s); stdout: ${proc.stdout().slice(-2000)}`),
  };
}

const check = (service: Service, token = TOKEN) =>
  service.envoy.check({ headers: { authorization: `Bearer ${token}` }, timeoutMs: 3000 }).then(summarize);

const RELOADED = 'configuration reloaded';
const REJECTED = 'configuration rejected; the previous one stays in force';
const RESTART = 'these settings take effect only after a restart';

/** Write the file in place (truncate and write, as `>` in a shell or many editors do). */
const overwrite = (path: string, text: string) => writeFileSync(path, text);
/** Write beside the file and rename over it (as editors that write atomically do). */
const replace = (path: string, text: string) => {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
};

interface LoopResult {
  start: number;
  end: number;
  ok: boolean;
  allowed?: boolean;
  subject?: string;
  error?: string;
}

/** `workers` clients, each sending Checks one after the other until stop() (or `maxMs`). */
function checkLoop(service: Service, workers: number, maxMs: number) {
  const results: LoopResult[] = [];
  let stopped = false;
  const until = Date.now() + maxMs;
  const worker = async () => {
    while (!stopped && Date.now() < until) {
      const start = Date.now();
      try {
        const r = await check(service);
        results.push({ start, end: Date.now(), ok: true, allowed: r.allowed, subject: r.headers['x-auth-subject'] });
      } catch (error) {
        const e = error as grpc.ServiceError;
        results.push({ start, end: Date.now(), ok: false, error: `${e.code}: ${e.message}` });
      }
    }
  };
  const done = Promise.all(Array.from({ length: workers }, worker));
  return {
    results,
    stop: async () => {
      stopped = true;
      await within(done, 5000, 'check loop');
    },
  };
}

t.test('a changed file is picked up without a signal; an invalid one is rejected; no Check fails meanwhile', async (t) => {
  // Answers take 40 ms, so that the loop below always has Checks in flight when the configuration is swapped.
  const [fakeA, fakeB] = await Promise.all([fakeServer(t, 'alice', 40), fakeServer(t, 'bob', 40)]);
  const clientSecret = secret('first');
  const leaked = secret('misspelt');
  const leakedInYaml = secret('yaml');
  const config = (url: string, mappedIdentity: string, extra = '') => `server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
  shutdownTimeout: 2000
log:
  level: info
  decisions: deny
cache:
  validatedTokenTTL: 0
endpoints:
  - name: as
    url: ${url}
    clientId: authz
    clientSecret: ${clientSecret}
${extra}policies:
  - name: default
    mappedIdentity: "${mappedIdentity}"
`;
  const path = join(newDir(), 'config.yaml');
  writeFileSync(path, config(fakeA.url, '{sub}'));
  const service = await startService(t, path);

  const first = await check(service);
  t.equal(first.allowed, true, 'before: allowed');
  t.equal(first.headers['x-auth-subject'], 'alice', 'before: identity from endpoint A with template {sub}');
  t.same(await reloadCounts(service.opsPort), { success: 0, failure: 0 }, 'before: no reloads counted');

  const loop = checkLoop(service, 4, 6000);
  await sleep(400);

  // A valid change, written in place: endpoint B and a new identity template.
  const changedAt = Date.now();
  overwrite(path, config(fakeB.url, 'b:{sub}'));
  const firstNew = await waitFor(() => loop.results.find((r) => r.subject === 'b:bob'), 2000, 'a Check answered by the new configuration');
  t.ok(firstNew.end - changedAt < 2000, `a Check followed the new file ${firstNew.end - changedAt} ms after the write`);
  await waitFor(async () => ((await reloadCounts(service.opsPort)).success === 1 ? true : undefined), 1000, 'success counted');
  const reloadedAt = Date.now();
  t.same(await reloadCounts(service.opsPort), { success: 1, failure: 0 }, 'authz_config_reloads_total{result="success"} 1');
  const reloaded = await service.waitLog(RELOADED, 1);
  t.match(reloaded, { level: 'info', trigger: 'file', policies: ['default'] }, 'logged the reload and its trigger');
  await sleep(200); // Checks started before the reload have reached endpoint A by now
  const requestsToA = fakeA.requests.length;
  t.ok(requestsToA > 0, `endpoint A was asked before the change (${requestsToA} times)`);

  // An invalid change: a misspelt key next to a secret, pointing back at endpoint A.
  await sleep(300);
  const rejectedAt = Date.now();
  replace(path, config(fakeA.url, 'a:{sub}', `    clientSecert: ${leaked}\n`));
  await waitFor(async () => ((await reloadCounts(service.opsPort)).failure === 1 ? true : undefined), 2000, 'failure counted');
  t.ok(Date.now() - rejectedAt < 2000, 'the invalid file was noticed within 2 s');
  t.same(await reloadCounts(service.opsPort), { success: 1, failure: 1 }, 'authz_config_reloads_total{result="failure"} 1, success still 1');
  const rejected = await service.waitLog(REJECTED, 1);
  t.equal(rejected.level, 'error', 'the rejection is an error line');
  t.equal(rejected.trigger, 'file');
  t.match(rejected.err, /^\S*config\.yaml: endpoints\[0\]\.clientSecert: unknown option$/, 'the err field names the file and the key');
  t.notOk(JSON.stringify(rejected).includes(leaked), 'the rejection line does not carry the misspelt secret');
  t.notOk(JSON.stringify(rejected).includes(clientSecret), 'nor the secret in force');

  // A YAML syntax error, written in place.
  await sleep(300);
  overwrite(path, config(fakeA.url, 'a:{sub}').replace(`clientSecret: ${clientSecret}`, `clientSecret: "${leakedInYaml}`));
  await waitFor(async () => ((await reloadCounts(service.opsPort)).failure === 2 ? true : undefined), 2000, 'second failure counted');
  const syntax = await service.waitLog(REJECTED, 2);
  t.match(syntax.err, /config\.yaml: YAML syntax error at line \d+, column \d+/, 'a syntax error is rejected with its position');
  t.notOk(JSON.stringify(syntax).includes(leakedInYaml), 'without quoting the line that holds a secret');
  await sleep(300);
  const { results } = loop;
  await loop.stop();

  t.same(await reloadCounts(service.opsPort), { success: 1, failure: 2 }, 'in the end: one success, two failures');
  t.ok(results.length >= 40, `the loop ran ${results.length} Checks`);
  const failed = results.filter((r) => !r.ok);
  t.same(failed, [], 'no Check failed as an RPC');
  const denied = results.filter((r) => r.ok && !r.allowed);
  t.same(denied, [], 'no Check was denied');
  t.same([...new Set(results.map((r) => r.subject))].sort(), ['alice', 'b:bob'], 'identities came from the two valid configurations only');
  const before = results.filter((r) => r.end < changedAt);
  t.ok(before.length > 0 && before.every((r) => r.subject === 'alice'), `the ${before.length} Checks done before the change were answered by the first file`);
  const after = results.filter((r) => r.start > reloadedAt);
  t.ok(after.length > 0 && after.every((r) => r.subject === 'b:bob'), `the ${after.length} Checks started after the reload were all answered by the second file, through both rejections`);
  t.equal(fakeA.requests.length, requestsToA, 'endpoint A was not asked again: the invalid files pointing back at it were not applied');
  const lastToB = fakeB.requests.at(-1);
  t.equal(lastToB?.headers.authorization, basic('authz', clientSecret), 'endpoint B got the credentials of the file in force');

  const output = service.proc.stdout() + service.proc.stderr();
  for (const [what, value] of [
    ['client secret', clientSecret],
    ['misspelt secret', leaked],
    ['secret in the broken YAML', leakedInYaml],
    ['Basic credentials', basic('authz', clientSecret)],
  ] as const) {
    t.notOk(output.includes(value), `no ${what} in the logs`);
  }
  t.same(service.logs(RELOADED).length, 1, 'exactly one reload logged');
  t.same(service.logs(REJECTED).length, 2, 'exactly two rejections logged');
  t.equal(service.proc.stderr(), '', 'nothing on stderr');
});

t.test('a changed clientSecretFile reloads by itself; SIGHUP reloads an unchanged file', async (t) => {
  const fake = await fakeServer(t, 'alice');
  const dir = newDir();
  const secretFile = join(dir, 'client-secret');
  const firstSecret = secret('first');
  const secondSecret = secret('second');
  writeFileSync(secretFile, `${firstSecret}\n`);
  const path = join(dir, 'config.yaml');
  writeFileSync(path, `server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
  shutdownTimeout: 2000
log:
  level: info
endpoints:
  - name: as
    url: ${fake.url}
    clientId: authz
    clientSecretFile: ${secretFile}
`);
  const service = await startService(t, path);

  t.equal((await check(service)).allowed, true, 'allowed');
  t.equal((await check(service)).allowed, true, 'allowed again, from the cache');
  t.equal(fake.requests.length, 1, 'one introspection');
  t.equal(fake.requests[0]?.headers.authorization, basic('authz', firstSecret), 'with the first secret');

  // The secret file sits beside the configuration, which is unchanged: watched itself, its change is a reload.
  writeFileSync(secretFile, `${secondSecret}\n`);
  const rotated = await service.waitLog(RELOADED, 1);
  t.match(rotated, { trigger: 'secret', files: ['endpoints[0].clientSecretFile'] }, 'a changed secret file reloads by itself');
  t.same(await reloadCounts(service.opsPort), { success: 1, failure: 0 }, 'counted as a success');
  t.equal((await check(service)).allowed, true, 'allowed after the reload');
  t.equal(fake.requests.length, 2, 'the endpoint\'s credentials changed, so its cached answers were dropped');
  t.equal(fake.requests[1]?.headers.authorization, basic('authz', secondSecret), 'the next introspection used the new secret');

  // SIGHUP with nothing changed: a reload that keeps the cache.
  service.proc.child.kill('SIGHUP');
  const reloaded = await service.waitLog(RELOADED, 2);
  t.match(reloaded, { trigger: 'SIGHUP' }, 'SIGHUP reloaded the unchanged file');
  t.same(await reloadCounts(service.opsPort), { success: 2, failure: 0 }, 'success 2');
  t.equal((await check(service)).allowed, true, 'allowed');
  t.equal(fake.requests.length, 2, 'nothing changed: the cached answer survived the reload');

  // The secret file becomes unreadable: rejected (seen by the watcher, then on SIGHUP), the old secret stays.
  rmSync(secretFile);
  const seen = await service.waitLog(REJECTED, 1);
  t.match(seen, { level: 'error', trigger: 'secret' }, 'the removal is seen and rejected');
  service.proc.child.kill('SIGHUP');
  const rejected = await service.waitLog(REJECTED, 2);
  t.match(rejected, { level: 'error', trigger: 'SIGHUP' }, 'a SIGHUP with an unreadable secret file is rejected');
  t.match(rejected.err, /endpoints\[0\]\.clientSecretFile: cannot read \S+client-secret: ENOENT/, 'names the key and the file');
  t.same(await reloadCounts(service.opsPort), { success: 2, failure: 2 }, 'counted as failures');
  t.equal((await check(service, `${TOKEN}-other`)).httpStatus, 401, 'still serving: an unknown token is denied');
  t.equal(fake.requests.at(-1)?.headers.authorization, basic('authz', secondSecret), 'with the secret in force');

  const output = service.proc.stdout() + service.proc.stderr();
  t.notOk(output.includes(firstSecret) || output.includes(secondSecret), 'no secret in the logs');
});

t.test('a Kubernetes ConfigMap update (..data symlink swap) is picked up; server settings wait for a restart', async (t) => {
  const fake = await fakeServer(t, 'alice');
  const dir = newDir();
  const config = (identityHeader: string, grpcPort = 0) => `server:
  grpc: {host: 127.0.0.1, port: ${grpcPort}}
  ops: {host: 127.0.0.1, port: 0}
  shutdownTimeout: 2000
log:
  level: info
endpoints:
  - name: as
    url: ${fake.url}
    authMethod: none
policies:
  - name: default
    identityHeader: ${identityHeader}
`;
  // The layout the kubelet makes: config.yaml -> ..data/config.yaml, ..data -> ..2024_01_01_00_00_00.1
  let versions = 0;
  let current = '';
  const publish = (text: string) => {
    const version = `..2024_01_01_00_00_0${(versions += 1)}.${process.pid}`;
    mkdirSync(join(dir, version));
    writeFileSync(join(dir, version, 'config.yaml'), text);
    symlinkSync(version, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    if (current) rmSync(join(dir, current), { recursive: true });
    current = version;
  };
  publish(config('x-auth-subject'));
  symlinkSync(join('..data', 'config.yaml'), join(dir, 'config.yaml'));
  const service = await startService(t, join(dir, 'config.yaml'));

  const before = await check(service);
  t.equal(before.headers['x-auth-subject'], 'alice', 'before: the identity in x-auth-subject');

  publish(config('x-auth-user'));
  const swappedAt = Date.now();
  await service.waitLog(RELOADED, 1);
  t.ok(Date.now() - swappedAt < 2000, `the swap was picked up in ${Date.now() - swappedAt} ms`);
  t.same(await reloadCounts(service.opsPort), { success: 1, failure: 0 }, 'counted as a success');
  const after = await check(service);
  t.equal(after.allowed, true, 'after: allowed');
  t.equal(after.headers['x-auth-user'], 'alice', 'after: the identity in x-auth-user');
  t.notOk('x-auth-subject' in after.headers, 'and no longer in x-auth-subject');
  t.equal(fake.requests.length, 1, 'a policy change keeps the cached introspection');
  t.equal(service.logs(RESTART).length, 0, 'no restart warning for a policy change');

  // A server setting: logged as needing a restart; the service stays where it is.
  const otherPort = await freePort();
  publish(config('x-auth-user', otherPort));
  await service.waitLog(RELOADED, 2);
  const warning = await service.waitLog(RESTART, 1);
  t.match(warning, { level: 'warn', keys: ['server.grpc.port'] }, 'a warning lists server.grpc.port');
  t.equal((await check(service)).headers['x-auth-user'], 'alice', 'still serving on the old port');
  t.equal(await tryConnect(otherPort), 'ECONNREFUSED', 'the new port was not bound');

  // The port back as it was, and a policy change: nothing needs a restart now.
  publish(config('x-auth-id'));
  await service.waitLog(RELOADED, 3);
  t.equal((await check(service)).headers['x-auth-id'], 'alice', 'the third version is in force');
  await sleep(100);
  t.equal(service.logs(RESTART).length, 1, 'no restart warning once the file matches the running server again');

  // And a change of the port again, after that: warned again.
  publish(config('x-auth-id', otherPort));
  await service.waitLog(RELOADED, 4);
  t.match(await service.waitLog(RESTART, 2), { keys: ['server.grpc.port'] }, 'warned again');
  t.same(await reloadCounts(service.opsPort), { success: 4, failure: 0 }, 'four successes, no failure');
});

/**
 * Write `text` into a FIFO once a reader has it open, after calling `meanwhile`.
 * A clientSecretFile that is a FIFO holds the process in its (synchronous)
 * configuration load until the test writes the secret: after it has read the
 * configuration file, before it serves or watches the file. That makes the
 * start-up window deterministic.
 */
async function writeToFifo(fifo: string, text: string, meanwhile: () => void = () => {}, ms = 5000): Promise<void> {
  // O_NONBLOCK: opening for writing fails (ENXIO) until a reader has it open, instead of blocking a thread.
  const fd = await waitFor(
    () => {
      try {
        return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENXIO') return undefined;
        throw error;
      }
    },
    ms,
    `a reader on ${fifo}`,
  );
  try {
    meanwhile();
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

function startUpConfig(url: string, identityHeader: string, clientSecretFile: string, opsHost = '127.0.0.1'): string {
  return `server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: ${opsHost}, port: 0}
  shutdownTimeout: 2000
log:
  level: info
endpoints:
  - name: as
    url: ${url}
    clientId: authz
    clientSecretFile: ${clientSecretFile}
policies:
  - name: default
    identityHeader: ${identityHeader}
`;
}

t.test('changes made while the process starts up are not lost', async (t) => {
  await t.test('the file changed after it was read, before it was watched: reloaded once serving', async (t) => {
    const fake = await fakeServer(t, 'alice');
    const dir = newDir();
    const fifo = join(dir, 'secret.fifo');
    execFileSync('mkfifo', [fifo]);
    const secretFile = join(dir, 'secret');
    const startSecret = secret('start');
    const newSecret = secret('new');
    writeFileSync(secretFile, newSecret);
    const path = join(dir, 'config.yaml');
    writeFileSync(path, startUpConfig(fake.url, 'x-auth-first', fifo));

    const proc = run(t, ['--config', path]);
    // The process has read config.yaml and waits for its secret: change the file now.
    await writeToFifo(fifo, startSecret, () => writeFileSync(path, startUpConfig(fake.url, 'x-auth-second', secretFile)));
    const { grpcPort, opsPort } = await serving(proc);
    const envoy = connectEnvoy(`127.0.0.1:${grpcPort}`);
    t.teardown(() => envoy.close());

    const reloaded = await waitFor(
      () => logLines(proc.stdout()).find((line) => line.msg === RELOADED),
      2000,
      'a reload of the file changed during start-up',
    );
    t.match(reloaded, { trigger: 'file' }, 'the change was noticed by comparing the file once it was watched');
    const answer = summarize(await envoy.check({ headers: { authorization: `Bearer ${TOKEN}` }, timeoutMs: 3000 }));
    t.equal(answer.headers['x-auth-second'], 'alice', 'the file as changed during start-up is in force');
    t.equal(fake.requests.at(-1)?.headers.authorization, basic('authz', newSecret), 'with its secret');
    t.same(await reloadCounts(opsPort), { success: 1, failure: 0 }, 'one reload');
  });

  await t.test('SIGHUP during start-up: the process survives it and reloads once serving', async (t) => {
    const fake = await fakeServer(t, 'alice');
    const dir = newDir();
    const fifo = join(dir, 'secret.fifo');
    execFileSync('mkfifo', [fifo]);
    const path = join(dir, 'config.yaml');
    // The ops server on "localhost": its listen waits for a name lookup, so start-up takes a turn of the
    // event loop, and the SIGHUP is taken while the service is not up yet.
    writeFileSync(path, startUpConfig(fake.url, 'x-auth-subject', fifo, 'localhost'));
    const startSecret = secret('start');
    const rotated = secret('rotated');

    // Bare: under tap, signal-exit in the child would catch the SIGHUP that the program must catch itself.
    const proc = run(t, ['--config', path], {}, { bare: true });
    await writeToFifo(fifo, startSecret, () => proc.child.kill('SIGHUP'));
    const { grpcPort } = await serving(proc);
    t.equal(proc.child.exitCode, null, 'still running after a SIGHUP while loading its configuration');
    // The reload the SIGHUP asked for reads the secret file again: the rotated secret.
    await writeToFifo(fifo, rotated, () => {}, 2000);
    const reloaded = await waitFor(
      () => logLines(proc.stdout()).find((line) => line.msg === RELOADED),
      2000,
      'the reload SIGHUP asked for',
    );
    t.match(reloaded, { trigger: 'SIGHUP' }, 'done once serving, as a SIGHUP reload');
    const envoy = connectEnvoy(`127.0.0.1:${grpcPort}`);
    t.teardown(() => envoy.close());
    t.equal(summarize(await envoy.check({ headers: { authorization: `Bearer ${TOKEN}` }, timeoutMs: 3000 })).allowed, true, 'allowed');
    t.equal(fake.requests.at(-1)?.headers.authorization, basic('authz', rotated), 'the introspection used the secret read by that reload');
    t.equal(logLines(proc.stdout()).filter((line) => line.msg === RELOADED || line.msg === REJECTED).length, 1, 'one reload');
    t.notOk(proc.stdout().includes(startSecret) || proc.stdout().includes(rotated), 'no secret in the logs');
  });
});
