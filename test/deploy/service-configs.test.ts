// Every service configuration shipped under deploy/ passes `check-config
// --skip-secrets`, as CI can run it without the pod's mounted secrets. The
// files are found by walking deploy/: a YAML file that is neither a
// Kubernetes-style object, a kustomize JSON patch nor an Envoy bootstrap is taken for a service
// configuration, so a new one is checked without anyone listing it here.
import t from 'tap';
import { ensureBuilt, run, within } from '../support/service-process.js';
import { DEPLOY, fromRepo, listFiles, serviceConfigs } from './lib/files.js';

const yamlFiles = listFiles(DEPLOY).filter((path) => /\.ya?ml$/.test(path));
const configs = serviceConfigs();

t.test('the walk finds the service configurations', async (t) => {
  t.ok(yamlFiles.length > configs.length, 'manifests are told apart from configurations');
  // The two users start from; the walk must see them, whatever else is added.
  t.ok(configs.some((p) => fromRepo(p) === 'deploy/config.example.yaml'), 'deploy/config.example.yaml');
  t.ok(configs.some((p) => fromRepo(p) === 'deploy/kubernetes/base/config.yaml'), 'deploy/kubernetes/base/config.yaml');
});

for (const path of configs) {
  t.test(`${fromRepo(path)}: check-config --skip-secrets passes`, async (t) => {
    ensureBuilt();
    const proc = run(t, ['check-config', '--skip-secrets', path]);
    const exit = await within(proc.exited, 20_000, 'check-config');
    t.same(exit, { code: 0, signal: null }, proc.stderr());
    t.equal(proc.stderr(), '', 'nothing on stderr');
    t.doesNotThrow(() => JSON.parse(proc.stdout()), 'prints the resolved configuration');
  });
}
