/**
 * The gRPC service definitions. Authorization/Check is described by hand: its
 * request is read and its response written by our own codec (request.ts,
 * response.ts), which reads only what the pipeline needs. Health is loaded
 * from our protos with proto-loader.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { AuthRequest } from '../auth-request.js';
import { decodeCheckRequest } from './request.js';

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

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: Number,
  bytes: Buffer,
  defaults: false,
  arrays: true,
  objects: true,
  oneofs: false,
};

/** Stands for bytes that are not a CheckRequest (a value grpc-js takes for a message: it treats null as none). */
export const UNDECODABLE: unique symbol = Symbol('undecodable CheckRequest');

/** What the Check handler receives. */
export type CheckInput = AuthRequest | typeof UNDECODABLE;

export interface ServiceDefinitions {
  /** Check's handler gets a CheckInput and answers with encoded CheckResponse bytes. */
  authorization: grpc.ServiceDefinition;
  health: grpc.ServiceDefinition;
}

const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

/**
 * Undecodable bytes become UNDECODABLE rather than an exception, which grpc-js would
 * turn into a failed RPC, and Envoy with failure_mode_allow into an allow.
 */
function deserializeCheck(bytes: Buffer): CheckInput {
  try {
    return decodeCheckRequest(bytes);
  } catch {
    return UNDECODABLE;
  }
}

const authorization: grpc.ServiceDefinition = {
  Check: {
    path: CHECK_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: () => {
      throw new Error('the service never sends a CheckRequest');
    },
    requestDeserialize: deserializeCheck,
    responseSerialize: (bytes: Buffer) => bytes,
    responseDeserialize: (bytes: Buffer) => bytes,
    originalName: 'check',
  },
};

let health: grpc.ServiceDefinition | undefined;

export function serviceDefinitions(): ServiceDefinitions {
  if (health === undefined) {
    const definition = protoLoader.loadSync('grpc/health/v1/health.proto', { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    health = pkg.grpc.health.v1.Health.service;
  }
  return { authorization, health };
}
