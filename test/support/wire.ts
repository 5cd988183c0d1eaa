/**
 * CheckRequest objects to bytes and CheckResponse bytes to objects, with our
 * protos (proto/) and proto-loader: the conventional codec, kept here to feed
 * and read the service's own hand-written one (src/envoy/request.ts,
 * src/envoy/response.ts) in tests. Field names are Envoy's snake_case
 * (keepCase); google.protobuf.Struct members are camelCase (protobufjs
 * describes the well-known types that way).
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { AuthRequest } from '../../src/auth-request.js';
import type { Decision } from '../../src/decision.js';
import { protoRoot } from '../../src/envoy/protos.js';
import { decodeCheckRequest as readCheckRequest } from '../../src/envoy/request.js';
import { encodeCheckResponse } from '../../src/envoy/response.js';

const definition = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', {
  keepCase: true,
  longs: String,
  enums: Number,
  bytes: Buffer,
  defaults: false,
  arrays: true,
  objects: true,
  oneofs: false,
  includeDirs: [protoRoot()],
});
const check = (
  grpc.loadPackageDefinition(definition) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
  }
).envoy.service.auth.v3.Authorization.service.Check!;

export function encodeCheckRequest(request: CheckRequest): Buffer {
  return check.requestSerialize(request);
}

/** The conventional decode: every field of the message, as proto-loader builds it. */
export function decodeCheckRequest(bytes: Buffer): CheckRequest {
  return check.requestDeserialize(bytes) as CheckRequest;
}

/** protobufjs' own encoding of a CheckResponse message object (fromObject, then encode): what the direct encoder must match. */
export function encodeCheckResponseMessage(message: object): Buffer {
  return Buffer.from(check.responseSerialize(message));
}

export function decodeCheckResponse(bytes: Buffer): CheckResponse {
  return check.responseDeserialize(bytes) as CheckResponse;
}

/** What the service's Check handler sees of this request. */
export function authRequestOf(request: CheckRequest): AuthRequest {
  return readCheckRequest(encodeCheckRequest(request));
}

/** What Envoy reads of the service's answer. */
export function checkResponseOf(decision: Decision): CheckResponse {
  return decodeCheckResponse(encodeCheckResponse(decision));
}

// Decoded shapes: the fields the tests build and read.

export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}

export interface CheckRequest {
  attributes?: {
    source?: { principal?: string; certificate?: string };
    request?: {
      http?: {
        id?: string;
        method?: string;
        headers?: Record<string, string>;
        path?: string;
        host?: string;
        scheme?: string;
        protocol?: string;
        header_map?: { headers?: HeaderValue[] };
      };
    };
    context_extensions?: Record<string, string>;
  };
}

export interface HeaderValueOption {
  header: { key: string; value: string };
  append: { value: boolean };
  append_action: number;
}

/**
 * google.protobuf.Struct and Value. protobufjs describes these well-known types
 * with camelCase field names, whatever keepCase says.
 */
export interface StructValue {
  fields: Record<string, ProtoValue>;
}

export type ProtoValue =
  | { nullValue: 0 }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: StructValue }
  | { listValue: { values: ProtoValue[] } };

export interface CheckResponse {
  status: { code: number; message?: string };
  ok_response?: {
    headers: HeaderValueOption[];
    headers_to_remove: string[];
  };
  denied_response?: {
    status: { code: number };
    headers: HeaderValueOption[];
    body: string;
  };
  dynamic_metadata?: StructValue;
}
