/**
 * Secrets that rotate without a signal, in the real process: the client
 * secret and the admin token, each a Kubernetes-style mounted Secret (the
 * file a symlink through `..data`, itself a symlink to a timestamped folder,
 * swapped by a rename). A change is applied like a reload: the next Check uses
 * the new secret; an unreadable or empty one is refused and the old stays in
 * force; each is counted and logged by key, never by value.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { deleteCache, ensureBuilt, httpGet, logLines, run, samples, serving, waitFor, type HttpAnswer, type Proc } from '../support/service-process.js';

t.before(ensureBuilt);

const root = mkdtempSync(join(tmpdir(), 'authz-secret-rotation-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

const TOKEN = 'secret-rotation-token-0123456789abcdef';

/** A folder shaped like a mounted Kubernetes Secret: name -> ..data/name, ..data -> ..<version>. */
class MountedSecret {
  readonly dir: string;
  readonly name: string;
  #version = 0;
  constructor(dir: string, name: string, value: string) {
    this.dir = dir;
    this.name = name;
    mkdirSync(dir, { recursive: true });
    const first = this.#write(value);
    symlinkSync(first, join(dir, '..data'));
    symlinkSync(join('..data', name), join(dir, name));
  }
  get path(): string {
    return join(this.dir, this.name);
  }
  /** As the kubelet does: a new version folder, a ..data_tmp link to it, renamed over ..data, the old folder removed. */
  rotate(value: string | null): void {
    const previous = `..v${this.#version}`;
    const next = value === null ? this.#empty() : this.#write(value);
    symlinkSync(next, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    rmSync(join(this.dir, previous), { recursive: true, force: true });
  }
  #write(value: string): string {
    const version = `..v${(this.#version += 1)}`;
    mkdirSync(join(this.dir, version));
    writeFileSync(join(this.dir, version, this.name), `${value}\n`);
    return version;
  }
  /** A version folder without the file: the link then points at nothing (unreadable). */
  #empty(): string {
    const version = `..v${(this.#version += 1)}`;
    mkdirSync(join(this.dir, version));
    return version;
  }
}


const reloads = (proc: Proc, msg: string) => logLines(proc.stdout()).filter((l) => l.msg === msg && l.trigger === 'secret');

t.test('a rotated client secret and admin token are in force without SIGHUP; a broken one is refused', async (t) => {
  const secrets: string[] = [];
  const fake = await startFakeAuthorizationServer((req) => {
    const basic = Buffer.from(String(req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString();
    secrets.push(basic.slice(basic.indexOf(':') + 1));
    return { json: { active: true, sub: 'alice' } };
  });
  t.teardown(() => fake.close());
  const client = new MountedSecret(join(root, 'client'), 'clientSecret', 'client-secret-one-A1');
  const admin = new MountedSecret(join(root, 'admin'), 'token', 'admin-token-one-0123456789');
  const path = join(root, 'config.yaml');
  writeFileSync(
    path,
    `server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
  admin: {host: 127.0.0.1, port: 0}
log:
  level: info
cache:
  validatedTokenTTL: 600
admin:
  tokenFile: ${admin.path}
endpoints:
  - name: as
    url: ${fake.url}
    clientId: gateway
    clientSecretFile: ${client.path}
    authMethod: client_secret_basic
`,
  );
  const proc = run(t, ['--config', path]);
  const { grpcPort, opsPort, adminPort } = await serving(proc);
  const envoy = connectEnvoy(`127.0.0.1:${grpcPort}`);
  t.teardown(() => envoy.close());
  const check = async () => summarize(await envoy.check({ headers: { authorization: `Bearer ${TOKEN}` }, timeoutMs: 5000 }));

  t.ok((await check()).allowed);
  t.same(secrets, ['client-secret-one-A1']);

  client.rotate('client-secret-two-B2');
  const applied = await waitFor(() => reloads(proc, 'configuration reloaded')[0], 5000, 'the reload for the client secret');
  t.same(applied.files, ['endpoints[0].clientSecretFile'], 'the log names the key that changed');
  t.ok((await check()).allowed);
  t.same(secrets, ['client-secret-one-A1', 'client-secret-two-B2'], 'asked again, with the new secret (the old answer had the old identity)');

  client.rotate(null);
  const refused = await waitFor(() => reloads(proc, 'configuration rejected; the previous one stays in force')[0], 5000, 'the refusal');
  t.match(String(refused.err), /endpoints\[0\]\.clientSecretFile: cannot read/, 'refused, naming the key');
  t.ok((await check()).allowed, 'still answering');

  client.rotate('client-secret-three-C3');
  await waitFor(() => (reloads(proc, 'configuration reloaded').length === 2 ? true : undefined), 5000, 'the reload once the file is back');
  t.ok((await check()).allowed);
  t.equal(secrets.at(-1), 'client-secret-three-C3');

  t.equal((await deleteCache(adminPort!, 'admin-token-one-0123456789', { token: TOKEN })).status, 200, 'the first admin token works');
  admin.rotate('admin-token-two-9876543210');
  await waitFor(() => (reloads(proc, 'configuration reloaded').length === 3 ? true : undefined), 5000, 'the admin token reload');
  t.equal((await deleteCache(adminPort!, 'admin-token-one-0123456789', { token: TOKEN })).status, 401, 'the old admin token no longer works');
  t.equal((await deleteCache(adminPort!, 'admin-token-two-9876543210', { token: TOKEN })).status, 200, 'the new one does');

  const metrics = samples((await httpGet(opsPort, '/metrics')).body);
  t.equal(metrics.get('authz_secret_file_reloads_total{result="success"}'), 3);
  t.equal(metrics.get('authz_secret_file_reloads_total{result="failure"}'), 1);
  const output = proc.stdout() + proc.stderr();
  for (const value of ['client-secret-one', 'client-secret-two', 'client-secret-three', 'admin-token-one', 'admin-token-two']) {
    t.notOk(output.includes(value), `no log line holds ${value}`);
  }
});
