/**
 * Baseline (a), the conventional no-op: grpc-js with the upstream Envoy protos
 * loaded by @grpc/proto-loader, decoding every CheckRequest in full and
 * answering an OK CheckResponse. What an ext_authz service that decides
 * nothing costs. Run as its own process; prints a JSON 'serving' line.
 */
import * as grpc from '@grpc/grpc-js';
import { upstreamDefinitions } from '../../test/support/envoy.js';
import { listen } from './listen.js';

const pkg = grpc.loadPackageDefinition(upstreamDefinitions()) as unknown as {
  envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
};
const OK = { status: { code: 0, message: '', details: [] }, ok_response: {} };

const server = new grpc.Server();
server.addService(pkg.envoy.service.auth.v3.Authorization.service, {
  Check: (_call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => callback(null, OK),
});
await listen(server);
