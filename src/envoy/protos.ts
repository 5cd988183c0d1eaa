/**
 * Loads our wire-compatible protos (proto/) once, and the shapes of the decoded
 * messages as this service sees them (proto-loader with keepCase, so field
 * names are Envoy's own snake_case).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The project's proto/ folder, found from this file whether it runs from src/ or dist/src/. */
export function protoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i += 1) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'envoy', 'service', 'auth', 'v3', 'external_auth.proto'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error('cannot find the proto/ folder next to the program');
}

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: Number,
  bytes: Buffer,
  defaults: false,
  arrays: true,
  objects: true,
  oneofs: false,
};

export interface ServiceDefinitions {
  authorization: grpc.ServiceDefinition;
  health: grpc.ServiceDefinition;
}

let loaded: ServiceDefinitions | undefined;

export function serviceDefinitions(): ServiceDefinitions {
  if (loaded) return loaded;
  const root = protoRoot();
  const definition = protoLoader.loadSync(
    ['envoy/service/auth/v3/external_auth.proto', 'grpc/health/v1/health.proto'],
    { ...LOADER_OPTIONS, includeDirs: [root] },
  );
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  loaded = {
    authorization: pkg.envoy.service.auth.v3.Authorization.service,
    health: pkg.grpc.health.v1.Health.service,
  };
  return loaded;
}

// Decoded shapes: only the fields this service reads or writes.

export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}

export interface CheckRequest {
  attributes?: {
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
