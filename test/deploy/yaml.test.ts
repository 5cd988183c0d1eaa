// Every YAML file under deploy/ parses: all of its documents, without
// duplicate keys, warnings or aliases (which some consumers refuse).
import t from 'tap';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { DEPLOY, fromRepo, listFiles } from './lib/files.js';

const files = listFiles(DEPLOY).filter((f) => /\.ya?ml$/.test(f));

t.test('deploy/ has the expected YAML files', async (t) => {
  const names = files.map(fromRepo);
  for (const expected of [
    'deploy/config.example.yaml',
    'deploy/envoy/envoy.yaml',
    'deploy/istio/authorization-policy.yaml',
    'deploy/istio/mesh-config.yaml',
    'deploy/istio/mesh-config-http.yaml',
    'deploy/istio/tracing.yaml',
    'deploy/kubernetes/base/kustomization.yaml',
    'deploy/kubernetes/base/config.yaml',
    'deploy/kubernetes/base/deployment.yaml',
    'deploy/kubernetes/overlays/example/kustomization.yaml',
  ]) {
    t.ok(names.includes(expected), expected);
  }
});

for (const file of files) {
  t.test(`${fromRepo(file)} parses`, async (t) => {
    const text = readFileSync(file, 'utf8');
    const documents = YAML.parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true });
    const list = Array.isArray(documents) ? documents : [documents];
    t.ok(list.length > 0, 'has a document');
    for (const [i, document] of list.entries()) {
      t.same(document.errors.map((e) => e.message), [], `document ${i}: no errors`);
      t.same(document.warnings.map((e) => e.message), [], `document ${i}: no warnings`);
      t.doesNotThrow(() => document.toJS({ maxAliasCount: 0 }), `document ${i}: no aliases`);
      t.not(document.toJS(), null, `document ${i} is not empty`);
    }
  });
}

t.test('a broken file would fail', async (t) => {
  const documents = YAML.parseAllDocuments('a: 1\na: 2\n---\nb: [\n', { uniqueKeys: true });
  const list = Array.isArray(documents) ? documents : [documents];
  t.ok(list.some((d) => d.errors.length > 0));
});
