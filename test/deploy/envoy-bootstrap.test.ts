// deploy/envoy/envoy.yaml is read as envoy.config.bootstrap.v3.Bootstrap with
// Envoy's own protos (from @grpc/grpc-js-xds), every typed_config decoded as
// the type its "@type" names, unknown fields refused; the result is encoded
// and decoded again. Then the wiring the service relies on is checked.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { DEPLOY } from './lib/files.js';
import { envoyReader } from './lib/envoy-protos.js';

const text = readFileSync(join(DEPLOY, 'envoy', 'envoy.yaml'), 'utf8');
const yaml = YAML.parse(text) as any;
const { root, reader, bootstrap } = envoyReader();

const TYPE = 'type.googleapis.com/envoy.extensions.';
const HCM = `${TYPE}filters.network.http_connection_manager.v3.HttpConnectionManager`;
const EXT_AUTHZ = `${TYPE}filters.http.ext_authz.v3.ExtAuthz`;
const PER_ROUTE = `${TYPE}filters.http.ext_authz.v3.ExtAuthzPerRoute`;
const ROUTER = `${TYPE}filters.http.router.v3.Router`;
const HTTP_OPTIONS = `${TYPE}upstreams.http.v3.HttpProtocolOptions`;

/** Every object with "@type" in a JSON tree. */
function typedConfigs(node: unknown, out: any[] = []): any[] {
  if (Array.isArray(node)) for (const item of node) typedConfigs(item, out);
  else if (node && typeof node === 'object') {
    if ('@type' in node) out.push(node);
    for (const value of Object.values(node)) typedConfigs(value, out);
  }
  return out;
}

const hcm = yaml.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const extAuthz = hcm.http_filters.find((f: any) => f.name === 'envoy.filters.http.ext_authz').typed_config;
const routes = hcm.route_config.virtual_hosts.flatMap((v: any) => v.routes);
const clusters = Object.fromEntries(yaml.static_resources.clusters.map((c: any) => [c.name, c]));

t.test('envoy.yaml decodes as a Bootstrap with every typed_config, no unknown field', async (t) => {
  const { value, problems } = reader.read(bootstrap, yaml, 'envoy.yaml');
  t.same(problems, [], 'no problem');
  const bytes = bootstrap.encode(bootstrap.fromObject(value)).finish();
  const decoded = bootstrap.toObject(bootstrap.decode(bytes), { enums: String, longs: Number }) as any;
  t.equal(decoded.static_resources.listeners[0].address.socket_address.port_value, 8080, 'survives encoding');

  // The packed ExtAuthz, decoded back from its bytes.
  const packed = decoded.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  t.equal(packed.type_url, HCM);
  const HcmType = root.lookupType(HCM.slice(HCM.lastIndexOf('/') + 1));
  const hcmDecoded = HcmType.toObject(HcmType.decode(packed.value), { enums: String }) as any;
  t.equal(hcmDecoded.path_with_escaped_slashes_action, 'UNESCAPE_AND_REDIRECT');
  const authzPacked = hcmDecoded.http_filters[0].typed_config;
  t.equal(authzPacked.type_url, EXT_AUTHZ);
  const ExtAuthzType = root.lookupType('envoy.extensions.filters.http.ext_authz.v3.ExtAuthz');
  const authzDecoded = ExtAuthzType.toObject(ExtAuthzType.decode(authzPacked.value), { enums: String, defaults: true }) as any;
  t.equal(authzDecoded.transport_api_version, 'V3');
  t.equal(authzDecoded.failure_mode_allow, false);
  t.equal(authzDecoded.grpc_service.envoy_grpc.cluster_name, 'introspection_authz');

  const types = new Set(typedConfigs(yaml).map((c) => c['@type']));
  for (const type of [HCM, EXT_AUTHZ, PER_ROUTE, ROUTER, HTTP_OPTIONS]) t.ok(types.has(type), `uses ${type.slice(TYPE.length)}`);
});

t.test('the strict reader catches mistakes Envoy would refuse', async (t) => {
  const problems = (edit: (y: any) => void): string[] => {
    const copy = structuredClone(yaml);
    edit(copy);
    return reader.read(bootstrap, copy, 'envoy.yaml').problems;
  };
  const hcmOf = (y: any) => y.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const authzOf = (y: any) => hcmOf(y).http_filters[0].typed_config;
  const rename = (o: any, from: string, to: string) => {
    o[to] = o[from];
    delete o[from];
  };
  t.same(problems(() => {}), [], 'the file as it is');
  t.match(problems((y) => rename(hcmOf(y), 'normalize_path', 'normalise_path')), [/<HttpConnectionManager>\.normalise_path: unknown field/], 'a typo inside a typed_config');
  t.match(problems((y) => rename(authzOf(y), 'failure_mode_allow', 'failure_mode_alow')), [/failure_mode_alow: unknown field of envoy\.extensions\.filters\.http\.ext_authz\.v3\.ExtAuthz/], 'a typo in ExtAuthz');
  t.match(problems((y) => rename(hcmOf(y).route_config.virtual_hosts[0].routes[1].typed_per_filter_config['envoy.filters.http.ext_authz'], 'check_settings', 'checkSetting')), [/checkSetting: unknown field/], 'a typo in ExtAuthzPerRoute');
  t.match(problems((y) => rename(y.static_resources.clusters[0].health_checks[0].grpc_health_check, 'service_name', 'service')), [/grpc_health_check\.service: unknown field/], 'a typo in a cluster');
  t.match(problems((y) => rename(y, 'static_resources', 'static_resource')), [/static_resource: unknown field of envoy\.config\.bootstrap\.v3\.Bootstrap/], 'a typo at the top');
  t.same(problems((y) => rename(authzOf(y), 'failure_mode_allow', 'failureModeAllow')), [], 'the JSON (camelCase) spelling is fine');
  t.match(problems((y) => (authzOf(y).failureModeAllow = true)), [/failureModeAllow: the same field as .*failure_mode_allow/], 'both spellings at once');
  t.match(problems((y) => (authzOf(y)['@type'] = `${TYPE}filters.http.ext_authz.v3.ExtAuth`)), [/names envoy\.extensions\.filters\.http\.ext_authz\.v3\.ExtAuth, which is not a known message type/], 'an unknown @type');
  t.match(problems((y) => (authzOf(y).grpc_service.timeout = '1 s')), [/timeout: expected a duration/], 'a malformed duration');
  t.match(problems((y) => (authzOf(y).grpc_service.timeout = 1)), [/timeout: expected a duration/], 'a duration without unit');
  t.match(problems((y) => (authzOf(y).transport_api_version = 'V4')), [/"V4" is not a value of envoy\.config\.core\.v3\.ApiVersion/], 'an unknown enum name');
  t.match(problems((y) => (authzOf(y).status_on_error.code = 999)), [/999 is not a value of envoy\.type\.v3\.StatusCode/], 'an unknown enum number');
  t.same(problems((y) => (authzOf(y).status_on_error.code = 503)), [], 'an enum by number');
  t.match(problems((y) => (y.static_resources.listeners[0].address.socket_address.port_value = '80a')), [/port_value: expected an integer/], 'a wrong scalar');
  t.match(problems((y) => (y.static_resources.listeners[0].address.socket_address.port_value = 70000)), [/port_value: must be at most 65535/], 'a validation rule (PGV)');
  t.match(problems((y) => (hcmOf(y).route_config.virtual_hosts[0].routes[1].match.path_separated_prefix = '/partners/')), [/path_separated_prefix: must match/], 'a pattern rule (PGV)');
  t.match(problems((y) => (hcmOf(y).route_config.virtual_hosts[0].routes[1].typed_per_filter_config['envoy.filters.http.ext_authz'].disabled = true)), [/disabled and check_settings are one of override/], 'two members of a oneof');
  t.match(problems((y) => delete y.static_resources.clusters[0].health_checks[0].interval), [/health_checks\[0\]\.interval: required/], 'a required field left out');
  t.match(problems((y) => delete y.static_resources.clusters[0].health_checks[0].grpc_health_check), [/one of .*grpc_health_check.* is required/], 'a required oneof left out');
  t.match(problems((y) => delete hcmOf(y).stat_prefix), [/stat_prefix: needs at least 1 character/], 'an empty string where one is required');
  t.match(problems((y) => (y.static_resources.clusters[0].http2_protocol_options = {})), [/http2_protocol_options: deprecated field/], 'a deprecated field');
  t.match(problems((y) => (hcmOf(y).common_http_protocol_options.idle_timeout = { seconds: 300 })), [/idle_timeout: expected a duration/], 'the binary form of a Duration');
  t.match(problems((y) => (y.static_resources.clusters[0].health_checks[0].unhealthy_threshold = { value: 2 })), [/unhealthy_threshold: expected an integer/], 'a wrapper must be a bare value in JSON');
});

t.test('the listener and the HTTP connection manager', async (t) => {
  t.equal(yaml.admin.address.socket_address.address, '127.0.0.1', 'admin on loopback only');
  t.equal(yaml.static_resources.listeners[0].address.socket_address.port_value, 8080);
  t.equal(hcm['@type'], HCM);
  t.equal(hcm.normalize_path, true);
  t.equal(hcm.merge_slashes, true);
  t.ok(['UNESCAPE_AND_REDIRECT', 'REJECT_REQUEST'].includes(hcm.path_with_escaped_slashes_action), 'escaped slashes are not passed through');
  t.equal(hcm.common_http_protocol_options.headers_with_underscores_action, 'REJECT_REQUEST', 'x_auth_* spellings never reach the upstream');
  const names = hcm.http_filters.map((f: any) => f.name);
  t.same(names, ['envoy.filters.http.ext_authz', 'envoy.filters.http.router'], 'ext_authz before the router, the router last');
});

t.test('the ext_authz filter', async (t) => {
  t.equal(extAuthz['@type'], EXT_AUTHZ);
  t.equal(extAuthz.transport_api_version, 'V3');
  t.equal(extAuthz.failure_mode_allow, false, 'fails closed');
  t.equal(extAuthz.status_on_error.code, 'ServiceUnavailable', '503 when the service cannot be reached');
  t.match(extAuthz.grpc_service.timeout, /^\d+(\.\d+)?s$/, 'an explicit timeout (Envoy would use 200 ms)');
  t.notOk('with_request_body' in extAuthz, 'the body is not buffered');
  const cluster = clusters[extAuthz.grpc_service.envoy_grpc.cluster_name];
  t.ok(cluster, 'its cluster exists');
  const options = cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
  t.equal(options['@type'], HTTP_OPTIONS);
  t.ok(options.explicit_http_config.http2_protocol_options, 'HTTP/2 to the service (gRPC)');
  t.ok(cluster.health_checks[0].grpc_health_check, 'gRPC health-checked');
});

t.test('routes: each names a policy or turns ext_authz off', async (t) => {
  let disabled = 0;
  for (const route of routes) {
    t.equal(clusters[route.route.cluster]?.name, route.route.cluster, `${route.name}: its cluster exists`);
    const perRoute = route.typed_per_filter_config?.['envoy.filters.http.ext_authz'];
    t.equal(perRoute?.['@type'], PER_ROUTE, `${route.name}: ExtAuthzPerRoute`);
    if (perRoute?.disabled) disabled += 1;
    else t.ok(perRoute?.check_settings?.context_extensions?.policy, `${route.name}: names a policy`);
  }
  t.equal(disabled, 1, 'one route (health) without the check');
  const health = routes.find((r: any) => r.typed_per_filter_config['envoy.filters.http.ext_authz'].disabled);
  t.same(health.match, { path: '/healthz' }, 'the unchecked route is an exact health path, not a prefix');
});

t.test('tracing: the OpenTelemetry tracer, so the ext_authz call is traced and its context reaches the service', async (t) => {
  const tracing = hcm.tracing;
  t.ok(tracing, 'the connection manager traces');
  t.equal(tracing.provider.name, 'envoy.tracers.opentelemetry');
  t.equal(tracing.provider.typed_config['@type'], 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig');
  t.ok(tracing.random_sampling.value > 0 && tracing.random_sampling.value <= 100, 'a sampling percentage');
  const collector = clusters[tracing.provider.typed_config.grpc_service.envoy_grpc.cluster_name];
  t.ok(collector, "the collector's cluster exists");
  const options = collector.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
  t.ok(options.explicit_http_config.http2_protocol_options, 'HTTP/2 to the collector (OTLP/gRPC)');
  // Envoy puts the ext_authz span's context in the call's metadata; the CheckRequest's own headers carry the client's.
  const exact = extAuthz.allowed_headers.patterns.filter((p: any) => p.exact).map((p: any) => p.exact);
  for (const name of ['traceparent', 'tracestate', 'b3']) t.ok(exact.includes(name), `${name} goes into the CheckRequest`);
  t.ok(extAuthz.allowed_headers.patterns.some((p: any) => p.prefix === 'x-b3-'), 'x-b3-* too');

  const problems = (edit: (y: any) => void): string[] => {
    const copy = structuredClone(yaml);
    edit(copy);
    return reader.read(bootstrap, copy, 'envoy.yaml').problems;
  };
  const tracerOf = (y: any) => y.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.tracing.provider.typed_config;
  t.match(problems((y) => (tracerOf(y).service = 'x')), [/service: unknown field of envoy\.config\.trace\.v3\.OpenTelemetryConfig/], 'the tracer config is read strictly');
  t.match(problems((y) => (tracerOf(y).grpc_service.envoy_grpc = { cluster: 'otel_collector' })), [/envoy_grpc\.cluster: unknown field/], 'and its gRPC service too');
});
