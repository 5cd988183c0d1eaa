// One test reads every deployment file and the service's own defaults, and
// checks that they agree: ports, health paths, names, namespaces, mount
// paths, timeouts and the policies routes select.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { schema } from '../../src/config/schema.js';
import { AUTHORIZATION_SERVICE } from '../../src/server/health-service.js';
import { DEPLOY, fromRepo, repoPath, serviceConfigs } from './lib/files.js';
import { execForm, parseDockerfile, stages } from './lib/dockerfile.js';
import { readYamlDocuments, selects, type KubeObject } from './lib/kubernetes.js';

// --- everything, read once ---------------------------------------------------
const base = join(DEPLOY, 'kubernetes', 'base');
const overlay = join(DEPLOY, 'kubernetes', 'overlays', 'example');
const objects = ['deployment', 'service', 'servicemonitor', 'networkpolicy', 'networkpolicy-egress', 'priorityclass', 'poddisruptionbudget', 'horizontalpodautoscaler', 'serviceaccount'].flatMap(
  (f) => readYamlDocuments(join(base, `${f}.yaml`)) as KubeObject[],
);
const get = (kind: string, name = 'introspection-authz') => objects.find((o) => o.kind === kind && o.metadata.name === name) as any;
const deployment = get('Deployment');
const service = get('Service');
const headless = get('Service', 'introspection-authz-headless');
const monitor = get('ServiceMonitor');
const netpol = get('NetworkPolicy');
const egress = get('NetworkPolicy', 'introspection-authz-egress');
const priorityClass = get('PriorityClass');
const pdb = get('PodDisruptionBudget');
const hpa = get('HorizontalPodAutoscaler');
const pod = deployment.spec.template.spec;
const container = pod.containers[0];
const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
const containerPort = (name: string) => container.ports.find((p: any) => p.name === name)?.containerPort as number;
const servicePort = (svc: any, name: string) => svc.spec.ports.find((p: any) => p.name === name);
const mounts = Object.fromEntries(container.volumeMounts.map((m: any) => [m.name, m.mountPath])) as Record<string, string>;
const volumes = Object.fromEntries(pod.volumes.map((v: any) => [v.name, v]));

const overlayKustomization = YAML.parse(readFileSync(join(overlay, 'kustomization.yaml'), 'utf8')) as any;
const baseKustomization = YAML.parse(readFileSync(join(base, 'kustomization.yaml'), 'utf8')) as any;
const namespace: string = overlayKustomization.namespace;
const netpolPatch = YAML.parse(readFileSync(join(overlay, 'networkpolicy-workloads.yaml'), 'utf8')) as any[];

const configText = readFileSync(join(base, 'config.yaml'), 'utf8');
// The loader reads secret files: give it one where the mounted Secret would be.
const secretDir = mkdtempSync(join(tmpdir(), 'authz-deploy-'));
t.teardown(() => rmSync(secretDir, { recursive: true, force: true }));
writeFileSync(join(secretDir, 'client-secret'), 'example\n');
writeFileSync(join(secretDir, 'admin-token'), 'example-admin-token-0123456789\n');
const config = parseConfig(configText.replaceAll('/var/run/secrets/introspection/', `${secretDir}/`), 'config.yaml', { env: {} });

const [operator] = readYamlDocuments(join(DEPLOY, 'istio', 'mesh-config.yaml')) as any[];
const provider = operator.spec.meshConfig.extensionProviders[0];
const [authzPolicy] = readYamlDocuments(join(DEPLOY, 'istio', 'authorization-policy.yaml')) as any[];

const envoy = YAML.parse(readFileSync(join(DEPLOY, 'envoy', 'envoy.yaml'), 'utf8')) as any;
const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const extAuthz = hcm.http_filters.find((f: any) => f.name === 'envoy.filters.http.ext_authz').typed_config;
const authzCluster = envoy.static_resources.clusters.find((c: any) => c.name === extAuthz.grpc_service.envoy_grpc.cluster_name);
const authzAddress = authzCluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
const routes = hcm.route_config.virtual_hosts.flatMap((v: any) => v.routes);
const perRoute = (r: any) => r.typed_per_filter_config?.['envoy.filters.http.ext_authz'];

const runtime = stages(parseDockerfile(readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8'))).at(-1)!;
const dockerOf = (k: string) => runtime.instructions.filter((i) => i.keyword === k);
const exposed = dockerOf('EXPOSE').flatMap((i) => i.args.split(/\s+/)).map(Number);
const cmd = execForm(dockerOf('CMD')[0]!.args)!;

const packageVersion = (JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string }).version;

/** Milliseconds of a Duration string such as "1s" or "0.25s". */
function ms(duration: string): number {
  const m = /^(\d+(?:\.\d+)?)s$/.exec(duration);
  if (!m) throw new Error(`not a duration: ${duration}`);
  return Number(m[1]) * 1000;
}

/** The most the service keeps back to answer before a proxy's deadline (README, "Deadlines"). */
const ANSWER_MARGIN_MS = 50;

// --- the checks --------------------------------------------------------------
t.test('gRPC port: service default, config, container, Services, Istio, Envoy, NetworkPolicy, image', async (t) => {
  const port = schema.server.grpc.port.default;
  t.equal(port, 9001);
  t.equal(config.server.grpc.port, port, 'config.yaml');
  t.equal(containerPort('grpc'), port, 'container port grpc');
  for (const svc of [service, headless]) {
    const p = servicePort(svc, 'grpc');
    t.equal(p.port, port, `${svc.metadata.name} port`);
    t.equal(p.targetPort, 'grpc', `${svc.metadata.name} targets the named port`);
    t.equal(p.appProtocol, 'grpc', `${svc.metadata.name} appProtocol grpc`);
  }
  t.equal(provider.envoyExtAuthzGrpc.port, port, 'Istio extension provider');
  t.equal(authzAddress.port_value, port, 'Envoy cluster');
  t.ok(netpol.spec.ingress.some((r: any) => r.ports.some((p: any) => p.port === port)), 'NetworkPolicy admits it');
  t.ok(exposed.includes(port), 'Dockerfile EXPOSE');
});

t.test('ops port: service default, config, container, Service, ServiceMonitor, NetworkPolicy, image', async (t) => {
  const port = schema.server.ops.port.default;
  t.equal(port, 9090);
  t.equal(config.server.ops.port, port, 'config.yaml');
  t.equal(containerPort('ops'), port, 'container port ops');
  t.equal(servicePort(service, 'ops').port, port, 'Service');
  t.equal(servicePort(service, 'ops').targetPort, 'ops');
  t.notOk(servicePort(headless, 'ops'), 'not on the headless Service (scraped once)');
  t.equal(monitor.spec.endpoints[0].port, 'ops', 'ServiceMonitor scrapes the Service port named ops');
  t.ok(netpol.spec.ingress.some((r: any) => r.ports.some((p: any) => p.port === port)), 'NetworkPolicy admits it');
  t.ok(exposed.includes(port), 'Dockerfile EXPOSE');
  const healthcheck = dockerOf('HEALTHCHECK')[0]?.args ?? '';
  t.match(healthcheck, `127.0.0.1:${port}/healthz`, 'Dockerfile HEALTHCHECK');
});

t.test('health and metrics paths (the ops server: /healthz, /readyz, /metrics)', async (t) => {
  t.same(container.readinessProbe.httpGet, { path: '/readyz', port: 'ops' }, 'readiness: 503 while draining');
  t.same(container.livenessProbe.httpGet, { path: '/healthz', port: 'ops' }, 'liveness: 200 while alive, draining included');
  t.equal(monitor.spec.endpoints[0].path, '/metrics');
  t.equal(authzCluster.health_checks[0].grpc_health_check.service_name, AUTHORIZATION_SERVICE, 'Envoy health-checks the service name our Health reports');
});

t.test('names and namespaces: Istio and Envoy reach the Services of the overlay', async (t) => {
  t.equal(namespace, 'introspection-authz');
  t.equal(provider.envoyExtAuthzGrpc.service, `${service.metadata.name}.${namespace}.svc.cluster.local`, 'Istio: the virtual-IP Service');
  t.equal(authzAddress.address, `${headless.metadata.name}.${namespace}.svc.cluster.local`, 'Envoy: the headless Service (one record per pod)');
  t.equal(headless.spec.clusterIP, 'None');
  t.equal(authzCluster.type, 'STRICT_DNS', 'STRICT_DNS resolves every pod');
  t.equal(authzPolicy.spec.provider.name, provider.name, 'AuthorizationPolicy names the provider');
});

t.test('selectors: every object finds the pods', async (t) => {
  t.ok(selects(deployment.spec.selector, podLabels), 'Deployment');
  t.ok(selects({ matchLabels: service.spec.selector }, podLabels), 'Service');
  t.ok(selects({ matchLabels: headless.spec.selector }, podLabels), 'headless Service');
  t.ok(selects(pdb.spec.selector, podLabels), 'PodDisruptionBudget');
  t.ok(selects(netpol.spec.podSelector, podLabels), 'NetworkPolicy');
  t.ok(selects(monitor.spec.selector, service.metadata.labels), 'ServiceMonitor selects the Service');
  t.notOk(selects(monitor.spec.selector, headless.metadata.labels), 'and not the headless one');
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name }, 'HPA');
  t.equal(pod.serviceAccountName, get('ServiceAccount').metadata.name, 'ServiceAccount');
});

t.test('replicas, disruption, autoscaling', async (t) => {
  t.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name, 'the HPA scales the Deployment');
  // A count beside the HPA is re-applied on every GitOps sync and fights it.
  t.notOk('replicas' in deployment.spec, 'the Deployment leaves the count to the HPA');
  t.ok(hpa.spec.minReplicas >= 2, 'at least two replicas');
  t.ok(hpa.spec.maxReplicas > hpa.spec.minReplicas);
  t.ok(pdb.spec.maxUnavailable < hpa.spec.minReplicas, 'the PDB always leaves a pod');
  t.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0, 'rolling updates never go below the count');
  t.ok(pod.topologySpreadConstraints.some((c: any) => c.topologyKey === 'kubernetes.io/hostname'), 'spread over nodes');
});

t.test('the admin route: its own listener on loopback, exposed by nothing', async (t) => {
  t.not(config.admin.token, null, 'the shipped configuration turns the admin route on');
  t.equal(config.server.admin.host, '127.0.0.1', 'on loopback: only from inside the pod (kubectl port-forward)');
  t.not(config.server.admin.port, config.server.ops.port, 'not on the ops port that Prometheus reaches');
  const adminPort = config.server.admin.port;
  t.notOk(container.ports.some((p: any) => p.containerPort === adminPort), 'no container port names it');
  for (const svc of [service, headless]) t.notOk(svc.spec.ports.some((p: any) => p.port === adminPort || p.targetPort === adminPort), `${svc.metadata.name} does not expose it`);
  const opened = netpol.spec.ingress.flatMap((rule: any) => rule.ports.map((p: any) => p.port));
  t.notOk(opened.includes(adminPort), 'the NetworkPolicy opens it to no one');
});

t.test('egress: DNS, the introspection endpoints and Redis, nothing else', async (t) => {
  t.ok(selects(egress.spec.podSelector, podLabels), 'applies to the pods');
  t.same(egress.spec.policyTypes, ['Egress'], 'an egress policy: everything not listed is refused');
  const allows = (port: number, protocol: string) =>
    egress.spec.egress.filter((rule: any) => rule.ports.some((p: any) => p.port === port && p.protocol === protocol));
  const dns = allows(53, 'UDP');
  t.equal(dns.length, 1, 'DNS over UDP');
  t.same(allows(53, 'TCP'), dns, 'and TCP (large answers), to the same place');
  t.match(dns[0].to[0], { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } });
  for (const endpoint of config.endpoints) {
    // Introspection goes to url; a kind jwt endpoint only fetches its key set.
    const url = new URL(endpoint.url ?? endpoint.jwksUri ?? endpoint.issuer!);
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const rules = allows(port, 'TCP');
    t.equal(rules.length, 1, `endpoint ${endpoint.name}: port ${port} is open`);
    const block = rules[0]?.to[0].ipBlock;
    t.equal(block?.cidr, '0.0.0.0/0', 'to public addresses');
    for (const privateRange of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']) {
      t.ok(block?.except.includes(privateRange), `not to ${privateRange} (cluster services, the cloud metadata endpoint)`);
    }
  }
  // Redis' own default port, the one deploy/redis/README.md uses.
  const redisPort = 6379;
  const redis = allows(redisPort, 'TCP');
  t.equal(redis.length, 1, `Redis (${redisPort})`);
  t.same(redis[0]?.to, [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'redis' } } }], 'only to Redis pods of the namespace');
  const ports = egress.spec.egress.flatMap((rule: any) => rule.ports.map((p: any) => `${p.port}/${p.protocol}`)).sort();
  t.same(ports, ['443/TCP', '53/TCP', '53/UDP', `${redisPort}/TCP`].sort(), 'no other port');
});

t.test('priority: the pods are scheduled ahead of ordinary workloads, behind the system ones', async (t) => {
  t.equal(pod.priorityClassName, priorityClass.metadata.name);
  t.ok(priorityClass.value > 0 && priorityClass.value < 1_000_000_000, `value ${priorityClass.value}: above the default 0, below the reserved system range`);
  t.equal(priorityClass.globalDefault, false, 'never the default for other pods');
});

t.test('CPU: the request is sized from the bench figures at the load README.md states', async (t) => {
  const readme = readFileSync(repoPath('README.md'), 'utf8').replace(/\s+/g, ' ');
  const cold = Number(/service CPU ([\d.]+) ms per Check/.exec(readme)?.[1]);
  const sizing = /sized for ([\d,]+) Checks\/s per pod with (\d+)% cached answers at ([\d.]+) ms of CPU each \(cold ([\d.]+) ms\), plus (\d+)m at rest/.exec(readme);
  t.ok(sizing, 'README.md "Capacity" states the load and the figures');
  if (!sizing) return;
  const [rate, cachedShare, cachedMs, coldMs, rest] = [Number(sizing[1]!.replace(',', '')), Number(sizing[2]) / 100, Number(sizing[3]), Number(sizing[4]), Number(sizing[5])];
  t.equal(coldMs, cold, `the cold figure is the bench's (${cold} ms)`);
  t.ok(cachedMs < cold, 'a cached Check costs less');
  const millicores = (text: string) => (text.endsWith('m') ? Number(text.slice(0, -1)) : Number(text) * 1000);
  const { requests, limits } = container.resources;
  const target = hpa.spec.metrics[0].resource.target.averageUtilization / 100;
  const used = rate * (cachedShare * cachedMs + (1 - cachedShare) * coldMs) + rest;
  const scalesAt = millicores(requests.cpu) * target;
  t.ok(Math.abs(scalesAt - used) / used < 0.15, `the HPA scales out (${scalesAt}m) near the CPU of the stated load (${used.toFixed(0)}m)`);
  t.ok(millicores(limits.cpu) >= rate * coldMs, `the limit (${limits.cpu}) carries the same load all cold (${rate * coldMs}m)`);
  t.ok(millicores(limits.cpu) / millicores(requests.cpu) <= 4, 'the scheduler\'s view (the request) is within 4x of the limit');
});

t.test('shutdown: the grace period covers the preStop sleep and the drain', async (t) => {
  const sleep = container.lifecycle.preStop.sleep.seconds * 1000;
  t.ok(sleep >= 3000, 'endpoints have a few seconds to be removed before the drain');
  t.equal(config.server.shutdownTimeout, schema.server.shutdownTimeout.default, 'the default drain deadline');
  const needed = sleep + config.server.shutdownTimeout + 5000;
  t.ok(pod.terminationGracePeriodSeconds * 1000 >= needed, `${pod.terminationGracePeriodSeconds} s >= ${needed / 1000} s (sleep + drain + 5 s)`);
  t.same(dockerOf('STOPSIGNAL').map((i) => i.args), ['SIGTERM']);
});

t.test('files: the configuration and the secret are where the program reads them', async (t) => {
  const configPath = cmd[cmd.indexOf('--config') + 1];
  t.same(container.args, cmd, 'the Deployment passes the image\'s default arguments');
  t.equal(configPath, `${mounts.config}/config.yaml`, 'the ConfigMap mount holds config.yaml');
  t.equal(volumes.config.configMap.name, baseKustomization.configMapGenerator[0].name, 'the generated ConfigMap');
  t.same(baseKustomization.configMapGenerator[0].files, ['config.yaml']);
  const files = [...configText.matchAll(/^\s*\w*File: (\S+)/gm)].map((m) => m[1]!);
  t.ok(files.length > 0, 'secrets come from files');
  const secretGenerator = overlayKustomization.secretGenerator.find((g: any) => g.name === volumes.credentials.secret.secretName);
  t.ok(secretGenerator, 'the overlay generates the Secret the Deployment mounts');
  const keys = secretGenerator.files.map((f: string) => f.split('=')[0]);
  for (const file of files) {
    const at = file.lastIndexOf('/');
    t.equal(file.slice(0, at), mounts.credentials, `${file} is in the Secret's mount`);
    t.ok(keys.includes(file.slice(at + 1)), `${file.slice(at + 1)} is a key of the Secret`);
  }
});

t.test('timeouts: the proxies wait longer than the identity provider is given', async (t) => {
  // In every shipped configuration: users copy deploy/config.example.yaml as much as the ConfigMap's.
  const shipped = serviceConfigs().map((path) => parseConfig(readFileSync(path, 'utf8'), fromRepo(path), { env: {}, skipSecrets: true }));
  t.ok(shipped.length >= 2, 'the example and the ConfigMap at least');
  const slowest = Math.max(...shipped.flatMap((c) => c.endpoints.map((e) => e.authenticationTimeout)));
  for (const [who, timeout] of [
    ['Envoy', extAuthz.grpc_service.timeout],
    ['Istio', provider.envoyExtAuthzGrpc.timeout],
  ] as const) {
    t.ok(ms(timeout) >= slowest + ANSWER_MARGIN_MS, `${who} ${timeout} >= authenticationTimeout ${slowest} ms + ${ANSWER_MARGIN_MS} ms`);
    t.ok(ms(timeout) <= 5000, `${who} ${timeout} bounds a hung provider`);
  }
  t.equal(extAuthz.grpc_service.timeout, provider.envoyExtAuthzGrpc.timeout, 'Envoy and Istio alike');
  t.equal(provider.envoyExtAuthzGrpc.statusOnError, '503');
  t.equal(extAuthz.status_on_error.code, 'ServiceUnavailable', '503 in both');
  t.equal(provider.envoyExtAuthzGrpc.failOpen, false);
  t.equal(extAuthz.failure_mode_allow, false, 'closed in both');
});

t.test('policies: what routes name exists in the ConfigMap', async (t) => {
  const names = config.policies.map((p) => p.name);
  t.ok(names.includes(config.defaultPolicy), 'the default policy exists (Istio requests use it)');
  const named = new Set<string>();
  for (const route of routes) {
    const extensions = perRoute(route)?.check_settings?.context_extensions;
    if (!extensions) continue;
    t.same(Object.keys(extensions), [config.policySelector], `${route.name}: keyed by policySelector`);
    const policy = extensions[config.policySelector];
    t.ok(names.includes(policy), `${route.name}: policy ${policy} exists`);
    named.add(policy);
  }
  t.same([...named].sort(), [...names].sort(), 'every policy is used by a route');
});

t.test('Istio picks the policy Envoy\'s routes name: the match rules mirror the routes', async (t) => {
  // Envoy: a route's prefix or path_separated_prefix names a policy. The
  // service: that policy's match rule has the same pathPrefix (characters)
  // or pathSeparatedPrefix (segments), so requests through Istio (no
  // context_extensions) get the same policy.
  const envoyRules = routes
    .filter((r: any) => r.match.path_separated_prefix || (r.match.prefix && r.match.prefix !== '/'))
    .map((r: any) => {
      const kind = r.match.path_separated_prefix ? 'segments' : 'characters';
      return `${perRoute(r).check_settings.context_extensions[config.policySelector]} ${kind} ${r.match.path_separated_prefix ?? r.match.prefix}`;
    });
  const serviceRules = config.policies.flatMap((p) =>
    p.match.map((m) => `${p.name} ${m.separated ? 'segments' : 'characters'} ${m.pathPrefix}`),
  );
  t.ok(envoyRules.length > 0, 'some route selects by prefix');
  t.same(envoyRules.sort(), serviceRules.sort());
  const catchAll = routes.find((r: any) => r.match.prefix === '/');
  t.equal(perRoute(catchAll).check_settings.context_extensions[config.policySelector], config.defaultPolicy, 'the catch-all route is the default policy');
});

t.test('paths are normalized alike by Envoy and Istio', async (t) => {
  t.equal(hcm.normalize_path, true);
  t.equal(hcm.merge_slashes, true);
  t.equal(hcm.path_with_escaped_slashes_action, 'UNESCAPE_AND_REDIRECT', 'Envoy decodes %2F and %5C');
  t.equal(operator.spec.meshConfig.pathNormalization.normalization, 'DECODE_AND_MERGE_SLASHES', 'so does Istio');
});

t.test('unchecked paths agree between Envoy and Istio', async (t) => {
  const envoyPaths = routes.filter((r: any) => perRoute(r)?.disabled).map((r: any) => r.match.path);
  const istioPaths = authzPolicy.spec.rules.flatMap((r: any) => r.to.flatMap((to: any) => to.operation.notPaths ?? []));
  t.same(envoyPaths.sort(), istioPaths.sort());
});

t.test('the NetworkPolicy lets the sample workload and the gateway in', async (t) => {
  const [patch] = netpolPatch;
  t.equal(patch.op, 'add');
  t.equal(patch.path, '/spec/ingress/0/from/-', 'added to the gRPC rule');
  t.same(netpol.spec.ingress[0].ports.map((p: any) => p.port), [config.server.grpc.port]);
  t.equal(patch.value.namespaceSelector.matchLabels['kubernetes.io/metadata.name'], authzPolicy.metadata.namespace, 'the AuthorizationPolicy\'s namespace');
  t.same(patch.value.podSelector.matchLabels, authzPolicy.spec.selector.matchLabels, 'the AuthorizationPolicy\'s workload');
});

t.test('the image: tag, user, pod security', async (t) => {
  t.equal(container.image, `introspection-authz:${packageVersion}`, 'the base names this version');
  t.equal(overlayKustomization.images[0].name, 'introspection-authz', 'the overlay rewrites that image');
  const user = dockerOf('USER')[0]!.args.split(':');
  t.equal(String(pod.securityContext.runAsUser), user[0], 'runAsUser is the image\'s user');
  t.equal(String(pod.securityContext.runAsGroup), user[1], 'runAsGroup is the image\'s group');
  t.equal(pod.securityContext.fsGroup, pod.securityContext.runAsGroup, 'mounted secrets are readable by the group');
  t.equal(volumes.credentials.secret.defaultMode, 0o440);
  const sc = container.securityContext;
  t.equal(sc.runAsNonRoot, true);
  t.equal(sc.allowPrivilegeEscalation, false);
  t.equal(sc.readOnlyRootFilesystem, true);
  t.same(sc.capabilities.drop, ['ALL']);
  t.equal(sc.seccompProfile.type, 'RuntimeDefault');
  t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  t.equal(pod.automountServiceAccountToken, false);
  t.ok(container.resources.requests.cpu && container.resources.requests.memory, 'requests');
  t.ok(container.resources.limits.cpu && container.resources.limits.memory, 'limits');
  const heap = /--max-old-space-size=(\d+)/.exec(container.env.find((e: any) => e.name === 'NODE_OPTIONS').value)!;
  t.ok(Number(heap[1]) < 256, 'the V8 heap stays below the memory limit (256Mi)');
  t.equal(container.resources.limits.memory, '256Mi');
});

t.test('README\'s "Deploying it" tells what the files say', async (t) => {
  const readme = readFileSync(repoPath('README.md'), 'utf8');
  const start = readme.indexOf('\n## Deploying it\n');
  t.ok(start >= 0, 'the section exists');
  const section = readme.slice(start).split('\n## ')[1]!;
  for (const file of ['deploy/Dockerfile', 'deploy/envoy/envoy.yaml', 'deploy/istio/mesh-config.yaml', 'deploy/istio/authorization-policy.yaml', 'deploy/kubernetes/overlays/example']) {
    t.ok(section.includes(file), `names ${file}`);
  }
  t.ok(section.includes(`timeout: ${provider.envoyExtAuthzGrpc.timeout}`), `the timeout (${provider.envoyExtAuthzGrpc.timeout})`);
  t.ok(section.includes(`(${config.endpoints[0]!.authenticationTimeout} ms`), 'the authenticationTimeout');
  t.ok(section.includes(`terminationGracePeriodSeconds: ${pod.terminationGracePeriodSeconds}`), 'the grace period');
  t.ok(section.includes(`of ${container.lifecycle.preStop.sleep.seconds} s`), 'the preStop sleep');
});
