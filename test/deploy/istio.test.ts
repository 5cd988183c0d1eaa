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
      EnvoyExternalAuthorizationGrpcProvider envoy_ext_authz_grpc = 3;
    }
    message EnvoyExternalAuthorizationRequestBody {
      uint32 max_request_bytes = 1;
      bool allow_partial_message = 2;
      bool pack_as_bytes = 3;
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
  repeated ExtensionProvider extension_providers = 57;
  message ProxyPathNormalization {
    enum NormalizationType { DEFAULT = 0; NONE = 1; BASE = 2; MERGE_SLASHES = 3; DECODE_AND_MERGE_SLASHES = 4; }
    NormalizationType normalization = 1;
  }
  ProxyPathNormalization path_normalization = 61;
}`;

// protobufjs bundles the well-known types; load them before the text that imports them.
const root = new protobuf.Root().loadSync('google/protobuf/duration.proto', { keepCase: true });
protobuf.parse(MESH_PROTO, root, { keepCase: true });
root.resolveAll();
const reader = new ProtoJsonReader(root);
const MeshConfig = root.lookupType('istio.mesh.v1alpha1.MeshConfig');

const [operator] = readYamlDocuments(join(DEPLOY, 'istio', 'mesh-config.yaml')) as any[];
const [policy] = readYamlDocuments(join(DEPLOY, 'istio', 'authorization-policy.yaml')) as any[];

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
  t.match(problems((p) => (p.envoyExtAuthzHttp = { service: 'x', port: 1 })), [/envoyExtAuthzHttp: unknown field/], 'a provider kind this file does not know');
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
