// deploy/istio: the mesh configuration's extension provider, read strictly
// against Istio's MeshConfig message (a misspelt key fails), and the CUSTOM
// AuthorizationPolicy that uses it. The objects' Kubernetes schemas are
// checked by kubernetes.test.ts.
import t from 'tap';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { DEPLOY } from './lib/files.js';
import { readYamlDocuments } from './lib/kubernetes.js';
import { ProtoJsonReader } from './lib/proto-json.js';
import { readFileSync } from 'node:fs';
import { parseConfig } from '../../src/config/load.js';
import { readSubRequest } from '../../src/http/request.js';
import { attributeHeaderName, statusHeaderName } from '../../src/policy/upstream-headers.js';

/**
 * The part of istio.mesh.v1alpha1.MeshConfig that deploy/istio uses, with
 * names and numbers as in istio/api mesh/v1alpha1/config.proto. Another kind
 * of provider in mesh-config.yaml fails the test until it is added here.
 */
const MESH_PROTO = `syntax = "proto3";
package istio.mesh.v1alpha1;
import "google/protobuf/duration.proto";
message MeshConfig {
  message ExtensionProvider {
    string name = 1;
    oneof provider {
      EnvoyExternalAuthorizationHttpProvider envoy_ext_authz_http = 2;
      EnvoyExternalAuthorizationGrpcProvider envoy_ext_authz_grpc = 3;
      OpenTelemetryTracingProvider opentelemetry = 15;
    }
    message OpenTelemetryTracingProvider {
      string service = 1;
      uint32 port = 2;
      uint32 max_tag_length = 3;
    }
    message EnvoyExternalAuthorizationRequestBody {
      uint32 max_request_bytes = 1;
      bool allow_partial_message = 2;
      bool pack_as_bytes = 3;
    }
    message EnvoyExternalAuthorizationHttpProvider {
      string service = 1;
      uint32 port = 2;
      google.protobuf.Duration timeout = 9;
      string path_prefix = 3;
      bool fail_open = 4;
      string status_on_error = 5;
      repeated string include_headers_in_check = 6 [deprecated=true];
      repeated string include_request_headers_in_check = 10;
      map<string, string> include_additional_headers_in_check = 11;
      EnvoyExternalAuthorizationRequestBody include_request_body_in_check = 12;
      repeated string headers_to_upstream_on_allow = 7;
      repeated string headers_to_downstream_on_deny = 8;
      repeated string headers_to_downstream_on_allow = 13;
    }
    message EnvoyExternalAuthorizationGrpcProvider {
      string service = 1;
      uint32 port = 2;
      google.protobuf.Duration timeout = 5;
      bool fail_open = 3;
      string status_on_error = 4;
      EnvoyExternalAuthorizationRequestBody include_request_body_in_check = 6;
    }
  }
  bool enable_tracing = 12;
  repeated ExtensionProvider extension_providers = 57;
  message ProxyPathNormalization {
    enum NormalizationType { DEFAULT = 0; NONE = 1; BASE = 2; MERGE_SLASHES = 3; DECODE_AND_MERGE_SLASHES = 4; }
    NormalizationType normalization = 1;
  }
  ProxyPathNormalization path_normalization = 61;
}`;

/** The part of istio.telemetry.v1alpha1.Telemetry (served as telemetry.istio.io/v1) that deploy/istio uses. */
const TELEMETRY_PROTO = `syntax = "proto3";
package istio.telemetry.v1alpha1;
import "google/protobuf/wrappers.proto";
message Telemetry {
  message WorkloadSelector { map<string, string> match_labels = 1; }
  WorkloadSelector selector = 1;
  repeated Tracing tracing = 2;
}
message Tracing {
  repeated ProviderRef providers = 2;
  google.protobuf.DoubleValue random_sampling_percentage = 3;
  google.protobuf.BoolValue disable_span_reporting = 4;
}
message ProviderRef { string name = 1; }`;

// protobufjs bundles the well-known types; load them before the text that imports them.
const root = new protobuf.Root().loadSync(['google/protobuf/duration.proto', 'google/protobuf/wrappers.proto'], { keepCase: true });
protobuf.parse(MESH_PROTO, root, { keepCase: true });
protobuf.parse(TELEMETRY_PROTO, root, { keepCase: true });
root.resolveAll();
const reader = new ProtoJsonReader(root);
const MeshConfig = root.lookupType('istio.mesh.v1alpha1.MeshConfig');
const Telemetry = root.lookupType('istio.telemetry.v1alpha1.Telemetry');

const [operator] = readYamlDocuments(join(DEPLOY, 'istio', 'mesh-config.yaml')) as any[];
const [policy] = readYamlDocuments(join(DEPLOY, 'istio', 'authorization-policy.yaml')) as any[];
const [httpOperator] = readYamlDocuments(join(DEPLOY, 'istio', 'mesh-config-http.yaml')) as any[];

/** EnvoyExternalAuthorizationHttpProvider's fields, as the YAML spells them (camelCase of config.proto). */
const HTTP_PROVIDER_FIELDS = [
  'service', 'port', 'timeout', 'pathPrefix', 'failOpen', 'statusOnError', 'includeHeadersInCheck',
  'includeRequestHeadersInCheck', 'includeAdditionalHeadersInCheck', 'includeRequestBodyInCheck',
  'headersToUpstreamOnAllow', 'headersToDownstreamOnDeny', 'headersToDownstreamOnAllow',
];

/** Istio's header list syntax: "abc" exact, "abc*" prefix, "*abc" suffix. */
function istioMatches(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) =>
    p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : p.startsWith('*') ? name.endsWith(p.slice(1)) : name === p,
  );
}

t.test('mesh-config.yaml: an IstioOperator whose meshConfig reads as MeshConfig', async (t) => {
  t.equal(operator.apiVersion, 'install.istio.io/v1alpha1');
  t.equal(operator.kind, 'IstioOperator');
  t.same(Object.keys(operator.spec), ['meshConfig'], 'only the mesh configuration: merge it into yours');
  const { problems, value } = reader.read(MeshConfig, operator.spec.meshConfig, 'spec.meshConfig');
  t.same(problems, []);
  t.equal((value.path_normalization as any).normalization, 'DECODE_AND_MERGE_SLASHES', 'paths normalized as Envoy does');
  const providers = value.extension_providers as any[];
  t.equal(providers.length, 1);
  const grpc = providers[0].envoy_ext_authz_grpc;
  t.ok(grpc, 'an envoyExtAuthzGrpc provider');
  t.equal(grpc.fail_open, false, 'fails closed');
  t.equal(grpc.status_on_error, '503', 'a retryable status when the service cannot be reached');
  t.ok(grpc.timeout, 'sets its own timeout (Istio would wait 600 s)');
  t.match(grpc.service, /^[a-z0-9-]+\.[a-z0-9-]+\.svc\.cluster\.local$/, 'a service FQDN');
});

t.test('the MeshConfig reader refuses mistakes', async (t) => {
  const provider = operator.spec.meshConfig.extensionProviders[0];
  const problems = (edit: (p: any) => void): string[] => {
    const copy = structuredClone(provider);
    edit(copy);
    return reader.read(MeshConfig, { extensionProviders: [copy] }).problems;
  };
  t.match(problems((p) => (p.envoyExtAuthzGrpc.failopen = false)), [/failopen: unknown field/], 'a misspelt key');
  t.match(reader.read(MeshConfig, { pathNormalization: { normalization: 'MERGE_SLASH' } }).problems, [/"MERGE_SLASH" is not a value/], 'an unknown enum name');
  t.match(problems((p) => (p.envoyExtAuthzGrpc.statusOnError = 503)), [/status_on_error|statusOnError: expected a string/], 'an unquoted status');
  t.match(problems((p) => (p.envoyExtAuthzGrpc.timeout = '1 s')), [/timeout: expected a duration/], 'a malformed duration');
  t.same(problems((p) => (p.envoyExtAuthzGrpc.port = 70000)), [], 'uint32 takes 70000 (the schema has no port bound)');
  t.match(problems((p) => (p.zipkin = { service: 'x', port: 1 })), [/zipkin: unknown field/], 'a provider kind this file does not know');
  t.match(problems((p) => (p.envoyExtAuthzHttp = { service: 'x', port: 1, includeHeadersToCheck: ['a'] })), [/includeHeadersToCheck: unknown field/], 'a misspelt HTTP provider key');
});

t.test('authorization-policy.yaml: CUSTOM, with the provider of mesh-config.yaml', async (t) => {
  t.equal(policy.apiVersion, 'security.istio.io/v1');
  t.equal(policy.kind, 'AuthorizationPolicy');
  t.equal(policy.spec.action, 'CUSTOM');
  t.equal(policy.spec.provider.name, operator.spec.meshConfig.extensionProviders[0].name);
  t.ok(policy.metadata.namespace, 'in the namespace of its workload');
  t.ok(policy.spec.selector?.matchLabels || policy.spec.targetRefs, 'for a sample workload, not the whole namespace');
  // A CUSTOM policy without rules applies to no request at all.
  t.ok(policy.spec.rules?.length > 0, 'has rules');
});

t.test('mesh-config-http.yaml: an envoyExtAuthzHttp provider the HTTP reader takes', async (t) => {
  t.equal(httpOperator.kind, 'IstioOperator');
  t.same(Object.keys(httpOperator.spec), ['meshConfig'], 'only the mesh configuration: merge it into yours');
  t.same(reader.read(MeshConfig, httpOperator.spec.meshConfig, 'spec.meshConfig').problems, []);
  const providers = httpOperator.spec.meshConfig.extensionProviders as any[];
  t.equal(providers.length, 1);
  t.not(providers[0].name, operator.spec.meshConfig.extensionProviders[0].name, 'its own name: both providers can be merged');
  const http = providers[0].envoyExtAuthzHttp;
  t.ok(http, 'an envoyExtAuthzHttp provider');
  t.same(Object.keys(http).filter((k) => !HTTP_PROVIDER_FIELDS.includes(k)), [], 'only fields Istio knows');
  t.equal(http.service, operator.spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.service, 'the Service the gRPC provider uses');
  t.equal(http.port, 9002, 'server.http.port (default)');
  t.equal(http.failOpen, false, 'fails closed');
  t.equal(http.statusOnError, '503');
  t.ok(http.timeout, 'sets its own timeout (Istio would wait 600 s)');

  // What the sidecar sends: path = pathPrefix + original path; Host, method and
  // path always; of the client's headers only those includeRequestHeadersInCheck names.
  const sent = http.includeRequestHeadersInCheck as string[];
  const client: Record<string, string> = {
    authorization: 'Bearer t', dpop: 'proof', 'x-request-id': 'r1', 'x-auth-role': 'admin', x_auth_role: 'admin',
    'x-auth_role': 'admin', 'x_auth-role': 'admin', cookie: 'c=1', 'x-other': 'o',
  };
  const included = Object.entries(client).filter(([name]) => istioMatches(sent, name));
  const sub = readSubRequest('PUT', `${http.pathPrefix}/orders/7?x=1`, ['host', 'shop.example.com', ...included.flat()]);
  t.ok(sub.ok, 'taken');
  if (sub.ok) {
    t.equal(sub.contract, 'envoy');
    t.match(http.pathPrefix, /^\/envoy\/[^/]+$/, '/envoy/<policy>, no trailing slash: the original path brings its own');
    const segment = decodeURIComponent(http.pathPrefix.split('/')[2] ?? '');
    t.equal(sub.request.policy, segment === '-' ? undefined : segment, 'the policy the prefix names (- : the rules choose)');
    t.same([sub.request.method, sub.request.host, sub.request.path], ['PUT', 'shop.example.com', '/orders/7?x=1']);
    t.equal(sub.request.headers.get('authorization')?.[0], 'Bearer t', 'the token reaches the service');
    t.ok(sub.request.headers.has('dpop'), 'the DPoP proof reaches the service');
    // The service lists a client's copies for x-envoy-auth-headers-to-remove only if it sees them.
    for (const spoof of ['x-auth-role', 'x_auth_role', 'x-auth_role', 'x_auth-role']) {
      t.ok(sub.request.headers.has(spoof), `a client's ${spoof} reaches the service, to be removed`);
    }
    t.notOk(sub.request.headers.has('cookie'), 'nothing the policies do not read');
  }

  // Every header the shipped policies can set on an allow is copied upstream (overwriting a client's copy).
  const config = parseConfig(readFileSync(join(DEPLOY, 'kubernetes', 'base', 'config.yaml'), 'utf8'), 'config.yaml', { env: {}, skipSecrets: true });
  const upstream = http.headersToUpstreamOnAllow as string[];
  for (const p of config.policies) {
    const set = [p.identityHeader, statusHeaderName(p.headerPrefix), attributeHeaderName(p.headerPrefix, 'scope')!, p.attributesHeader ?? `${p.headerPrefix}attributes`];
    for (const name of set) t.ok(istioMatches(upstream, name), `${p.name}: ${name} goes upstream`);
  }
  t.notOk(istioMatches(upstream, 'x-envoy-auth-headers-to-remove'), 'the removal list is read by Envoy, never sent upstream');
  t.ok(istioMatches(http.headersToDownstreamOnDeny, 'www-authenticate') && istioMatches(http.headersToDownstreamOnDeny, 'dpop-nonce'), 'the challenge and the DPoP nonce reach the client');
});

t.test("tracing.yaml: an OpenTelemetry provider, the mesh's tracer through a Telemetry resource", async (t) => {
  const [tracingOperator, telemetry, ...rest] = readYamlDocuments(join(DEPLOY, 'istio', 'tracing.yaml')) as any[];
  t.same(rest, []);
  t.equal(tracingOperator.kind, 'IstioOperator');
  t.same(Object.keys(tracingOperator.spec), ['meshConfig'], 'only the mesh configuration: merge it into yours');
  const { problems, value } = reader.read(MeshConfig, tracingOperator.spec.meshConfig, 'spec.meshConfig');
  t.same(problems, []);
  t.equal(value.enable_tracing, true);
  const providers = value.extension_providers as any[];
  t.equal(providers.length, 1);
  const otel = providers[0].opentelemetry;
  t.ok(otel, 'an opentelemetry provider');
  t.equal(otel.port, 4317, 'OTLP/gRPC');
  t.not(providers[0].name, operator.spec.meshConfig.extensionProviders[0].name, 'its own name: merged beside the authorizer');

  t.equal(telemetry.apiVersion, 'telemetry.istio.io/v1');
  t.equal(telemetry.kind, 'Telemetry');
  t.equal(telemetry.metadata.namespace, 'istio-system', "the root namespace, no selector: the mesh's default");
  const read = reader.read(Telemetry, telemetry.spec, 'spec');
  t.same(read.problems, []);
  const tracing = (read.value.tracing as any[])[0];
  t.same(tracing.providers.map((p: any) => p.name), [providers[0].name], 'names the provider');
  const percentage = telemetry.spec.tracing[0].randomSamplingPercentage;
  t.ok(percentage > 0 && percentage <= 100, 'a sampling percentage');
  t.match(reader.read(Telemetry, { tracing: [{ randomSamplingPercent: 1 }] }).problems, [/randomSamplingPercent: unknown field/], 'read strictly');

  // The service exports to the same collector, over OTLP/HTTP (4318), when tracing.enabled is on.
  const [deployment] = readYamlDocuments(join(DEPLOY, 'kubernetes', 'base', 'deployment.yaml')) as any[];
  const env = Object.fromEntries(deployment.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]));
  t.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, `http://${otel.service}:4318`, "the Deployment's OTEL endpoint is the mesh's collector");
  t.equal(env.OTEL_TRACES_SAMPLER, 'parentbased_traceidratio', "the proxy's decision is followed");
  t.match(env.OTEL_TRACES_SAMPLER_ARG, /^0(\.\d+)?$|^1$/, 'a ratio');
  const config = parseConfig(readFileSync(join(DEPLOY, 'kubernetes', 'base', 'config.yaml'), 'utf8'), 'config.yaml', { env: {}, skipSecrets: true });
  t.equal(config.tracing.enabled, false, 'off until a collector is reachable (config.yaml says how)');
});
