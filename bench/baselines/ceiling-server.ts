/**
 * Baseline (b), the transport ceiling: grpc-js serving
 * /envoy.service.auth.v3.Authorization/Check with identity (de)serializers,
 * answering one pre-encoded OK CheckResponse without decoding the request.
 * Nothing that answers through grpc-js can be faster. Run as its own process;
 * prints a JSON 'serving' line with its port, as the service does.
 */
import * as grpc from '@grpc/grpc-js';
import { CHECK_PATH, okCheckResponse } from '../check-request.js';
import { listen } from './listen.js';

const OK = okCheckResponse();
const identity = (bytes: Buffer): Buffer => bytes;

const definition: grpc.ServiceDefinition = {
  Check: {
    path: CHECK_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: 'Check',
  },
};

const server = new grpc.Server();
server.addService(definition, {
  Check: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, OK),
});
await listen(server);
