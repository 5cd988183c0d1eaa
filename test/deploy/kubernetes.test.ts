// The Kubernetes manifests: every object validates against the Kubernetes API
// schemas (and the Prometheus Operator and Istio CRDs) with unknown fields
// refused, the kustomizations reference only files that exist, and the base
// and the example overlay build with kustomize into valid objects.
import t from 'tap';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import YAML from 'yaml';
import { DEPLOY, fromRepo, listFiles } from './lib/files.js';
import { NO_KUSTOMIZE, find, isKubeObject, kustomizeBuild, readYamlDocuments, validateObject, type KubeObject } from './lib/kubernetes.js';

const KUBERNETES = join(DEPLOY, 'kubernetes');
const BASE = join(KUBERNETES, 'base');
const OVERLAY = join(KUBERNETES, 'overlays', 'example');

interface Kustomization {
  resources?: string[];
  patches?: Array<{ path?: string; patch?: string }>;
  configMapGenerator?: Array<{ name: string; files?: string[] }>;
  secretGenerator?: Array<{ name: string; files?: string[] }>;
}

function kustomization(dir: string): Kustomization {
  return YAML.parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Kustomization;
}

/** The file part of a generator entry ("key=path" or "path"). */
function generatorFile(entry: string): string {
  return entry.includes('=') ? entry.slice(entry.indexOf('=') + 1) : entry;
}

/** Files a kustomization uses other than as resources: patches and generator inputs. */
function nonResourceFiles(dir: string): Set<string> {
  const k = kustomization(dir);
  const files = new Set<string>();
  for (const p of k.patches ?? []) if (p.path) files.add(join(dir, p.path));
  for (const g of [...(k.configMapGenerator ?? []), ...(k.secretGenerator ?? [])]) {
    for (const f of g.files ?? []) files.add(join(dir, generatorFile(f)));
  }
  return files;
}

const kustomizationDirs = listFiles(KUBERNETES)
  .filter((f) => basename(f) === 'kustomization.yaml')
  .map((f) => dirname(f));
const notObjects = new Set(kustomizationDirs.flatMap((d) => [...nonResourceFiles(d)]));

/** Every Kubernetes object written in a file under deploy/ (not patches, not kustomizations). */
const manifestFiles = listFiles(DEPLOY).filter(
  (f) => /\.ya?ml$/.test(f) && !f.startsWith(join(DEPLOY, 'envoy')) && !notObjects.has(f) && basename(f) !== 'kustomization.yaml',
);

t.test('every object in deploy/ validates against its API schema', async (t) => {
  let count = 0;
  for (const file of manifestFiles) {
    for (const object of readYamlDocuments(file).filter(isKubeObject)) {
      count += 1;
      t.same(validateObject(object), [], `${fromRepo(file)}: ${object.kind}/${object.metadata?.name}`);
    }
  }
  t.ok(count >= 11, `${count} objects checked`);
});

t.test('the schema check refuses what the API server would', async (t) => {
  const [deployment] = readYamlDocuments(join(BASE, 'deployment.yaml')) as KubeObject[];
  const mutate = (edit: (d: any) => void): string[] => {
    const copy = structuredClone(deployment) as any;
    edit(copy);
    return validateObject(copy);
  };
  t.same(mutate(() => {}), [], 'the original is valid');
  t.match(
    mutate((d) => {
      const sc = d.spec.template.spec.containers[0].securityContext;
      sc.readOnlyRootFileSystem = sc.readOnlyRootFilesystem;
      delete sc.readOnlyRootFilesystem;
    }),
    [/readOnlyRootFileSystem is not a field/],
    'a misspelt field',
  );
  t.match(mutate((d) => (d.spec.template.spec.terminationGracePeriod = 30)), [/terminationGracePeriod is not a field/], 'an unknown field');
  t.match(mutate((d) => (d.spec.replicas = 'two')), [/replicas must be integer/], 'a wrong type');
  t.match(mutate((d) => (d.spec.template.spec.containers[0].imagePullPolicy = 'Sometimes')), [/imagePullPolicy must be equal to one of/], 'a value outside an enum');
  t.match(mutate((d) => delete d.spec.template.spec.containers[0].name), [/containers\/0 must have required property name/], 'a missing required field');
  t.same(mutate((d) => (d.spec.template.metadata.labels['app.kubernetes.io/extra'] = 'yes')), [], 'labels are a map: any key');
  t.match(validateObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }), [/no schema known for v1\/Pod/]);

  const [monitor] = readYamlDocuments(join(BASE, 'servicemonitor.yaml')) as any[];
  monitor.spec.endpoints[0].intervall = '30s';
  t.match(validateObject(monitor), [/intervall is not a field/], 'CRDs too: ServiceMonitor');
  const [policy] = readYamlDocuments(join(DEPLOY, 'istio', 'authorization-policy.yaml')) as any[];
  policy.spec.rules[0].to[0].operation.notPath = ['/x'];
  t.match(validateObject(policy), [/notPath is not a field/], 'CRDs too: AuthorizationPolicy');
});

for (const dir of kustomizationDirs) {
  t.test(`${fromRepo(dir)}/kustomization.yaml references files that exist`, async (t) => {
    const k = kustomization(dir);
    for (const resource of k.resources ?? []) {
      const path = join(dir, resource);
      t.ok(existsSync(path), `resource ${resource} exists`);
      if (existsSync(path) && statSync(path).isDirectory()) {
        t.ok(existsSync(join(path, 'kustomization.yaml')), `${resource} is a kustomization`);
      }
    }
    for (const file of nonResourceFiles(dir)) t.ok(existsSync(file), `${fromRepo(file)} exists`);
    // A manifest left out of resources would never be applied.
    const listed = new Set((k.resources ?? []).map((r) => join(dir, r)));
    for (const file of listFiles(dir).filter((f) => dirname(f) === dir && /\.ya?ml$/.test(f))) {
      if (basename(file) === 'kustomization.yaml' || nonResourceFiles(dir).has(file)) continue;
      t.ok(listed.has(file), `${basename(file)} is used by the kustomization`);
    }
  });
}

const built = new Map<string, KubeObject[]>();
for (const dir of [BASE, OVERLAY]) {
  // kubectl ships with the machine image; without it the reference checks above still run.
  t.test(`kustomize builds ${fromRepo(dir)} into valid objects`, { skip: NO_KUSTOMIZE }, async (t) => {
    const result = kustomizeBuild(dir);
    if (!result || 'error' in result) {
      t.fail(result ? result.error : 'no kubectl');
      return;
    }
    built.set(dir, result.objects);
    for (const object of result.objects) {
      t.same(validateObject(object), [], `${object.kind}/${object.metadata.name}`);
    }
  });
}

t.test('the example overlay: namespace, image, generated names', { skip: NO_KUSTOMIZE }, async (t) => {
  const objects = built.get(OVERLAY);
  if (!objects) {
    t.fail('the overlay did not build');
    return;
  }
  const clusterScoped = new Set(['Namespace', 'PriorityClass']);
  for (const object of objects) {
    if (clusterScoped.has(object.kind)) {
      t.notOk(object.metadata.namespace, `${object.kind}/${object.metadata.name} is cluster-scoped`);
      continue;
    }
    t.equal(object.metadata.namespace, 'introspection-authz', `${object.kind}/${object.metadata.name} is namespaced`);
  }
  const deployment = find(objects, 'Deployment') as any;
  const pod = deployment.spec.template.spec;
  // A tag can be pushed again; a digest names one image.
  t.match(pod.containers[0].image, /^registry\.example\.com\/platform\/introspection-authz@sha256:[0-9a-f]{64}$/, 'the image is pinned by digest');
  t.equal(pod.priorityClassName, find(objects, 'PriorityClass').metadata.name, 'the pods get the shipped PriorityClass');
  const volumes = Object.fromEntries(pod.volumes.map((v: any) => [v.name, v]));
  const configMap = find(objects, 'ConfigMap');
  const secret = find(objects, 'Secret') as any;
  t.equal(volumes.config.configMap.name, configMap.metadata.name, 'the Deployment mounts the generated ConfigMap (hashed name)');
  t.match(configMap.metadata.name, /^introspection-authz-config-[a-z0-9]+$/);
  t.equal(volumes.credentials.secret.secretName, secret.metadata.name, 'and the generated Secret');
  t.ok(secret.data['client-secret'], 'the Secret has the key client-secret');
  // kube-prometheus-stack's default selectors pick objects by this label only.
  for (const kind of ['ServiceMonitor', 'PrometheusRule']) {
    const object = find(objects, kind);
    t.equal(object.metadata.labels?.release, 'kube-prometheus-stack', `${kind} carries the release label`);
    t.equal(object.metadata.labels?.['app.kubernetes.io/name'], 'introspection-authz', `${kind} keeps its own labels`);
  }
  t.notOk('replicas' in (deployment.spec as object), 'the overlay leaves the count to the HPA too');
});

t.test('kustomize refuses a misspelt kustomization field', { skip: NO_KUSTOMIZE }, async (t) => {
  const dir = t.testdir({
    'kustomization.yaml': 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresourcez: [a.yaml]\n',
  });
  const result = kustomizeBuild(dir);
  t.ok(result && 'error' in result && /unknown field/.test(result.error), 'kustomize is strict');
});
