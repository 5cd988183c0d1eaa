/**
 * Kubernetes objects checked against the API's own schemas, as the API server
 * would with strict field validation (kubectl's default, --validate=strict):
 * kubernetes-models (generated from the Kubernetes OpenAPI document and from
 * the Prometheus Operator and Istio CRDs) validates types, enums, formats and
 * required fields; unknown fields, which its schemas let through, are found
 * by watching which properties the generated validator reads.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PriorityClass } from 'kubernetes-models/scheduling.k8s.io/v1/PriorityClass';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { AuthorizationPolicy } from '@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy';
import { IstioOperator } from '@kubernetes-models/istio/install.istio.io/v1alpha1/IstioOperator';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
}

/** What each model's validate() runs on `this`. */
interface ModelClass {
  prototype: { validate(this: unknown): void };
}

/** The kinds deploy/ may contain; another kind fails until it is added here. */
const MODELS: Record<string, ModelClass> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'scheduling.k8s.io/v1/PriorityClass': PriorityClass,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
  'security.istio.io/v1/AuthorizationPolicy': AuthorizationPolicy,
  // Its CRD schema stops at metadata: spec is checked by test/deploy/istio.test.ts.
  'install.istio.io/v1alpha1/IstioOperator': IstioOperator,
};

/**
 * telemetry.istio.io has no kubernetes-models package: apiVersion, kind and
 * metadata are checked here, the spec by test/deploy/istio.test.ts against Istio's proto.
 */
const Telemetry: ModelClass = {
  prototype: {
    validate(this: unknown) {
      const object = this as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown; namespace?: unknown; labels?: unknown } };
      void object.apiVersion;
      void object.kind;
      const metadata = object.metadata;
      if (typeof metadata?.name !== 'string') throw new Error('data/metadata must have required property name');
      if (metadata.namespace !== undefined && typeof metadata.namespace !== 'string') throw new Error('data/metadata/namespace must be string');
      void metadata.labels;
    },
  },
};
MODELS['telemetry.istio.io/v1/Telemetry'] = Telemetry;

const OPAQUE_SPEC = new Set(['install.istio.io/v1alpha1/IstioOperator', 'telemetry.istio.io/v1/Telemetry']);

/** Properties the validator read on one object, and whether it enumerated them (a map). */
interface Visit {
  path: string;
  value: object;
  read: Set<string>;
  enumerated: boolean;
}

function watched(value: unknown, path: string, visits: Visit[]): unknown {
  if (value === null || typeof value !== 'object') return value;
  const visit: Visit = { path, value, read: new Set(), enumerated: false };
  visits.push(visit);
  const children = new Map<string, unknown>();
  return new Proxy(value, {
    get(target, key, receiver) {
      const child = Reflect.get(target, key, receiver) as unknown;
      if (typeof key !== 'string') return child;
      visit.read.add(key);
      if (child === null || typeof child !== 'object') return child;
      if (!children.has(key)) children.set(key, watched(child, `${path}/${key}`, visits));
      return children.get(key);
    },
    has(target, key) {
      if (typeof key === 'string') visit.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      visit.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

/** Problems of one object: schema violations and unknown fields. Empty when valid. */
export function validateObject(object: unknown): string[] {
  if (object === null || typeof object !== 'object') return ['not an object'];
  const { apiVersion, kind } = object as Partial<KubeObject>;
  const key = `${apiVersion}/${kind}`;
  const model = MODELS[key];
  if (!model) return [`no schema known for ${key}: add its model to test/deploy/lib/kubernetes.ts`];
  let checked = object as Record<string, unknown>;
  if (OPAQUE_SPEC.has(key)) {
    const { spec: _spec, ...rest } = checked;
    checked = rest;
  }
  const visits: Visit[] = [];
  const problems: string[] = [];
  try {
    model.prototype.validate.call(watched(checked, '', visits));
  } catch (error) {
    problems.push(...(error as Error).message.split(', '));
  }
  for (const visit of visits) {
    if (Array.isArray(visit.value) || visit.enumerated) continue;
    for (const field of Object.keys(visit.value)) {
      if (!visit.read.has(field)) problems.push(`data${visit.path}/${field} is not a field of ${key}`);
    }
  }
  return problems;
}

/** Every document of a YAML file; throws on a syntax error or warning. */
export function readYamlDocuments(path: string): unknown[] {
  const text = readFileSync(path, 'utf8');
  const documents = YAML.parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true });
  const out: unknown[] = [];
  for (const document of Array.isArray(documents) ? documents : [documents]) {
    const problem = document.errors[0] ?? document.warnings[0];
    if (problem) throw new Error(`${path}: ${problem.message}`);
    const value = document.toJS({ maxAliasCount: 0 }) as unknown;
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

export function isKubeObject(value: unknown): value is KubeObject {
  return value !== null && typeof value === 'object' && 'apiVersion' in value && 'kind' in value;
}

/** Why kustomize cannot run here, or false when it can (for tap's { skip }). */
export const NO_KUSTOMIZE: string | false = (() => {
  const result = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 30_000 });
  return result.error || result.status !== 0 ? 'kubectl (kustomize) is not installed' : false;
})();

/**
 * `kubectl kustomize DIR` (kustomize v5 inside kubectl), or null when kubectl
 * is not installed. Offline: it reads only the files under DIR.
 */
export function kustomizeBuild(dir: string): { objects: KubeObject[] } | { error: string } | null {
  const result = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT') return null;
  if (result.status !== 0) return { error: `${result.stderr || result.error?.message}` };
  const objects = YAML.parseAllDocuments(result.stdout).map((d) => d.toJS() as KubeObject).filter(isKubeObject);
  return { objects };
}

export function find<T extends KubeObject = KubeObject>(objects: KubeObject[], kind: string, name?: string): T {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (!found) throw new Error(`no ${kind}${name ? ` ${name}` : ''} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found as T;
}

/** Whether a label selector's matchLabels/matchExpressions select these labels. */
export function selects(
  selector: { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> },
  labels: Record<string, string> = {},
): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    const value = labels[e.key];
    switch (e.operator) {
      case 'In':
        if (!has || !e.values?.includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && e.values?.includes(value!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        throw new Error(`unknown selector operator ${e.operator}`);
    }
  }
  return true;
}
