/**
 * Plays Envoy: a gRPC client built from the upstream Envoy protos (shipped in
 * @grpc/grpc-js-xds), so what it sends and what it decodes is what Envoy would.
 * Used by the conformance and integration tests and by the demo.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const require = createRequire(import.meta.url);
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

export const UPSTREAM_INCLUDE_DIRS = ['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((d) => join(deps, d));

/** Decoded CheckResponse, upstream field names (snake_case), enums as names. */
export interface UpstreamCheckResponse {
  status?: { code: number; message: string; details: unknown[] };
  denied_response?: {
    status?: { code: string };
    headers: Array<{ header: { key: string; value: string; raw_value: Buffer }; append?: { value: boolean }; append_action: string; keep_empty_value: boolean }>;
    body: string;
  };
  ok_response?: {
    headers: Array<{ header: { key: string; value: string; raw_value: Buffer }; append?: { value: boolean }; append_action: string; keep_empty_value: boolean }>;
    headers_to_remove: string[];
    response_headers_to_add: unknown[];
    query_parameters_to_set: unknown[];
    query_parameters_to_remove: string[];
  };
  dynamic_metadata?: { fields: Record<string, UpstreamValue> };
  http_response?: string;
}

/** A decoded google.protobuf.Value (oneofs: true names the member set in `kind`). */
export interface UpstreamValue {
  kind?: string;
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  nullValue?: string | number;
  structValue?: { fields: Record<string, UpstreamValue> };
  listValue?: { values: UpstreamValue[] };
}

/** A decoded Struct's fields back to plain JSON, reading only the member `kind` names. */
export function structToJson(fields: Record<string, UpstreamValue>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) out[key] = valueToJson(value);
  return out;
}

function valueToJson(value: UpstreamValue): unknown {
  switch (value.kind) {
    case 'stringValue':
      return value.stringValue;
    case 'numberValue':
      return value.numberValue;
    case 'boolValue':
      return value.boolValue;
    case 'nullValue':
      return null;
    case 'structValue':
      return structToJson(value.structValue!.fields);
    case 'listValue':
      return value.listValue!.values.map(valueToJson);
    default:
      throw new Error(`unexpected google.protobuf.Value kind ${String(value.kind)}`);
  }
}

export interface CheckOptions {
  headers?: Record<string, string>;
  /** Send headers as Envoy does with encode_raw_headers: true (header_map, raw bytes, unmerged). */
  rawHeaders?: Array<[string, string]>;
  contextExtensions?: Record<string, string>;
  path?: string;
  host?: string;
  method?: string;
  /** HttpRequest.scheme and :scheme (default https). */
  scheme?: string;
  /** attributes.source.certificate: the URL-encoded PEM Envoy sends with include_peer_certificate. */
  peerCertificate?: string;
  /** gRPC deadline in ms, like Envoy's ext_authz timeout (default 2000). */
  timeoutMs?: number;
  /** gRPC initial metadata, as Envoy sends its ext_authz span's context (traceparent, b3...) when it traces. */
  metadata?: Record<string, string>;
}

export interface EnvoyClient {
  check(options: CheckOptions): Promise<UpstreamCheckResponse>;
  /** Send an already-built CheckRequest object (upstream field names). */
  checkRaw(request: object, timeoutMs?: number, metadata?: Record<string, string>): Promise<UpstreamCheckResponse>;
  /**
   * A CheckRequest encoded ahead of time, for a burst: Envoy encodes in C++,
   * and a client that spends its event loop on protobufjs would miss its own
   * deadlines before the service had a chance to meet them.
   */
  encode(options: CheckOptions): Buffer;
  /**
   * Send a request from encode(); the deadline is counted from this call, as
   * Envoy counts it. The answer comes undecoded (decode it with decode()
   * after the burst), so decoding does not hold up the client's own timers.
   */
  checkEncoded(bytes: Buffer, timeoutMs: number): Promise<Buffer>;
  decode(bytes: Buffer): UpstreamCheckResponse;
  health(service?: string): Promise<string>;
  close(): void;
}

let packageDefinition: protoLoader.PackageDefinition | undefined;

function definitions(): protoLoader.PackageDefinition {
  packageDefinition ??= protoLoader.loadSync(['envoy/service/auth/v3/external_auth.proto'], {
    includeDirs: UPSTREAM_INCLUDE_DIRS,
    keepCase: true,
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: true,
    arrays: true,
    objects: true,
    oneofs: true,
  });
  return packageDefinition;
}

/** The upstream Envoy protos as loaded here, for code that encodes or serves Checks itself (bench/). */
export function upstreamDefinitions(): protoLoader.PackageDefinition {
  return definitions();
}

/** The health protocol is tiny and not in Envoy's tree: described inline, from the gRPC health spec. */
const HEALTH_PROTO = `syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}`;

export function healthClientConstructor(): grpc.ServiceClientConstructor {
  // proto-loader reads files only; protobufjs parses text, so build the definition from it.
  const protobuf = require('protobufjs') as typeof import('protobufjs');
  const root = protobuf.parse(HEALTH_PROTO, { keepCase: true }).root;
  const definition = protoLoader.fromJSON(root.toJSON(), { keepCase: true, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  return pkg.grpc.health.v1.Health;
}

export function connectEnvoy(address: string): EnvoyClient {
  const pkg = grpc.loadPackageDefinition(definitions()) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
  };
  const Authorization = pkg.envoy.service.auth.v3.Authorization;
  const client = new Authorization(address, grpc.credentials.createInsecure());
  const Health = healthClientConstructor();
  const health = new Health(address, grpc.credentials.createInsecure());

  const checkRaw = (request: object, timeoutMs = 2000, metadata: Record<string, string> = {}): Promise<UpstreamCheckResponse> =>
    new Promise((resolve, reject) => {
      const sent = new grpc.Metadata();
      for (const [key, value] of Object.entries(metadata)) sent.set(key, value);
      (client as unknown as Record<string, Function>).Check!(
        request,
        sent,
        { deadline: Date.now() + timeoutMs },
        (error: grpc.ServiceError | null, response: UpstreamCheckResponse) => (error ? reject(error) : resolve(response)),
      );
    });

  const method = Authorization.service.Check!;
  const passThrough = (bytes: Buffer) => bytes;

  return {
    checkRaw,
    encode(options: CheckOptions): Buffer {
      return method.requestSerialize(buildCheckRequest(options));
    },
    checkEncoded(bytes: Buffer, timeoutMs: number): Promise<Buffer> {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(method.path, passThrough, passThrough, bytes, { deadline: Date.now() + timeoutMs }, (error, response) =>
          error ? reject(error) : resolve(response!),
        );
      });
    },
    decode(bytes: Buffer): UpstreamCheckResponse {
      return method.responseDeserialize(bytes) as UpstreamCheckResponse;
    },
    check(options: CheckOptions): Promise<UpstreamCheckResponse> {
      return checkRaw(buildCheckRequest(options), options.timeoutMs, options.metadata);
    },
    health(service = ''): Promise<string> {
      return new Promise((resolve, reject) => {
        (health as unknown as Record<string, Function>).Check!(
          { service },
          { deadline: Date.now() + 2000 },
          (error: grpc.ServiceError | null, response: { status: string }) => (error ? reject(error) : resolve(response.status)),
        );
      });
    },
    close(): void {
      client.close();
      health.close();
    },
  };
}

/** A CheckRequest as Envoy builds it for an HTTP request (upstream field names). */
export function buildCheckRequest(options: CheckOptions): object {
  const method = options.method ?? 'GET';
  const path = options.path ?? '/orders/42?expand=items';
  const host = options.host ?? 'api.example.com';
  const scheme = options.scheme ?? 'https';
  const http: Record<string, unknown> = {
    id: '9263827462521',
    method,
    path,
    host,
    scheme,
    protocol: 'HTTP/1.1',
  };
  if (options.rawHeaders) {
    http.header_map = {
      headers: [
        [':authority', host],
        [':path', path],
        [':method', method],
        [':scheme', scheme],
        ...options.rawHeaders,
      ].map(([key, value]) => ({ key, raw_value: Buffer.from(value!, 'utf8') })),
    };
  } else {
    http.headers = {
      ':authority': host,
      ':path': path,
      ':method': method,
      ':scheme': scheme,
      'user-agent': 'curl/8.5.0',
      accept: '*/*',
      'x-forwarded-proto': 'https',
      'x-request-id': 'b0a3c2e4-5f61-4c8e-9d2a-7e4f1a6b3c90',
      ...options.headers,
    };
  }
  return {
    attributes: {
      source: {
        address: { socket_address: { address: '10.1.2.3', port_value: 51234 } },
        principal: 'spiffe://cluster.local/ns/default/sa/client',
        ...(options.peerCertificate === undefined ? {} : { certificate: options.peerCertificate }),
      },
      destination: {
        address: { socket_address: { address: '10.1.2.4', port_value: 8080 } },
      },
      request: { time: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 }, http },
      context_extensions: options.contextExtensions ?? {},
    },
  };
}

/** Flatten the decoded response for assertions: headers as a name -> value map. */
export function summarize(response: UpstreamCheckResponse): {
  allowed: boolean;
  code: number;
  httpStatus: number | null;
  headers: Record<string, string>;
  headersToRemove: string[];
  body: string | null;
} {
  const code = response.status?.code ?? 0;
  const denied = response.denied_response;
  const headerList = (denied ?? response.ok_response)?.headers ?? [];
  const headers: Record<string, string> = {};
  for (const h of headerList) headers[h.header.key] = h.header.value;
  return {
    allowed: code === 0,
    code,
    httpStatus: denied?.status ? httpStatusNumber(denied.status.code) : null,
    headers,
    headersToRemove: response.ok_response?.headers_to_remove ?? [],
    body: denied?.body ?? null,
  };
}

const STATUS_NAMES: Record<string, number> = {
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  InternalServerError: 500,
  BadGateway: 502,
  ServiceUnavailable: 503,
  GatewayTimeout: 504,
};

function httpStatusNumber(code: string | number): number {
  if (typeof code === 'number') return code;
  const known = STATUS_NAMES[code];
  if (known === undefined) throw new Error(`unexpected HTTP status enum ${code}`);
  return known;
}
