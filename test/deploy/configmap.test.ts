// The service configuration the Kubernetes manifests ship (the ConfigMap made
// from deploy/kubernetes/base/config.yaml) passes the service's own loader and
// its check-config command, as the pod would load it.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { ensureBuilt, run, within } from '../support/service-process.js';
import { DEPLOY } from './lib/files.js';
import { NO_KUSTOMIZE, find, kustomizeBuild } from './lib/kubernetes.js';

const CONFIG = join(DEPLOY, 'kubernetes', 'base', 'config.yaml');
const SECRET_DIR = '/var/run/secrets/introspection';
const SECRET_FILE = `${SECRET_DIR}/client-secret`;
const SECRET = 'example-client-secret-value';

/** The configuration text with the secret file moved to where a test can write it. */
function withSecretIn(dir: string): string {
  const text = readFileSync(CONFIG, 'utf8');
  if (!text.includes(SECRET_FILE)) throw new Error(`config.yaml no longer reads ${SECRET_FILE}`);
  writeFileSync(join(dir, 'client-secret'), `${SECRET}\n`);
  writeFileSync(join(dir, 'admin-token'), 'example-admin-token-0123456789\n');
  return text.replaceAll(`${SECRET_DIR}/`, `${dir}/`);
}

t.test('config.yaml passes the loader', async (t) => {
  const dir = t.testdir({});
  const config = parseConfig(withSecretIn(dir), 'config.yaml', { env: {} });
  t.equal(config.server.grpc.port, 9001);
  t.equal(config.server.ops.port, 9090);
  t.equal(config.endpoints.length, 1);
  t.equal(config.endpoints[0]!.clientSecret!.reveal(), SECRET, 'the secret comes from the mounted file');
  t.same(config.policies.map((p) => p.name), ['internal', 'partner-api']);
  t.equal(config.defaultPolicy, 'internal');
  t.same(JSON.parse(JSON.stringify(config.policies[1]!.match)), [{ host: null, pathSeparatedPrefix: '/partners' }], 'Istio requests under /partners');
});

t.test('check-config accepts it', async (t) => {
  ensureBuilt();
  const dir = t.testdir({});
  const path = join(dir, 'config.yaml');
  writeFileSync(path, withSecretIn(dir));
  const proc = run(t, ['check-config', path]);
  const exit = await within(proc.exited, 20_000, 'check-config');
  t.equal(exit.code, 0, proc.stderr());
  const printed = JSON.parse(proc.stdout()) as { policies: Array<{ name: string }>; defaultPolicy: string };
  t.same(printed.policies.map((p) => p.name), ['internal', 'partner-api']);
  t.notMatch(proc.stdout(), SECRET, 'the secret is masked');
});

t.test('check-config refuses a broken copy (the command is really checking)', async (t) => {
  ensureBuilt();
  const dir = t.testdir({});
  const path = join(dir, 'config.yaml');
  writeFileSync(path, withSecretIn(dir).replace('authenticationTimeout:', 'authenticationTimout:'));
  const proc = run(t, ['check-config', path]);
  const exit = await within(proc.exited, 20_000, 'check-config');
  t.equal(exit.code, 2);
  t.match(proc.stderr(), /authenticationTimout/);
});

t.test('the ConfigMap kustomize generates holds config.yaml unchanged', { skip: NO_KUSTOMIZE }, async (t) => {
  const result = kustomizeBuild(join(DEPLOY, 'kubernetes', 'base'));
  if (!result || 'error' in result) {
    t.fail(result ? result.error : 'no kubectl');
    return;
  }
  const configMap = find(result.objects, 'ConfigMap') as { data?: Record<string, string> };
  t.same(Object.keys(configMap.data ?? {}), ['config.yaml'], 'one key, the file name the container reads');
  t.equal(configMap.data!['config.yaml'], readFileSync(CONFIG, 'utf8'));
});
