/**
 * Baselines (b) and (b'), the transport ceiling: grpc-js serving
 * /envoy.service.auth.v3.Authorization/Check with identity (de)serializers,
 * answering one pre-encoded CheckResponse without decoding the request.
 * Nothing that answers through grpc-js can be faster. (b) answers a bare OK;
 * (b') is started with a file holding the bytes the service answered to the
 * cached-allow request (`node ceiling-server.js ANSWER_FILE`), so the same
 * transport carries an answer of our size. Run as its own process; prints a
 * JSON 'serving' line with its port, as the service does.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { CHECK_PATH, okCheckResponse } from '../check-request.js';
import { listen } from './listen.js';

const file = process.argv[2];
const ANSWER = file === undefined ? okCheckResponse() : readFileSync(file);
if (ANSWER.length === 0) throw new Error(`${file}: an empty answer`);
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
  Check: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, ANSWER),
});
await listen(server);
