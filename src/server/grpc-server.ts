/**
 * The gRPC server: Authorization and Health on one port, and its orderly
 * shutdown (NOT_SERVING, refuse new calls, let in-flight ones finish).
 */
import * as grpc from '@grpc/grpc-js';
import { serviceDefinitions } from '../envoy/protos.js';
import { authorizationHandlers, type AuthorizationServiceOptions } from './authorization-service.js';
import { healthHandlers, HealthState, ServingStatus } from './health-service.js';

export interface GrpcServer {
  readonly port: number;
  readonly health: HealthState;
  /** Stop taking calls; in-flight calls get until `timeoutMs`, then are cut. */
  shutdown(timeoutMs: number): Promise<void>;
}

/**
 * @param maxCheckRequestBytes the largest message taken. grpc-js fails a call
 *   with a larger one (RESOURCE_EXHAUSTED) as soon as it reads the message's
 *   length prefix, before any handler or interceptor can answer it with a deny:
 *   the limit must be above what Envoy can send (see server.grpc.maxCheckRequestBytes).
 */
export async function startGrpcServer(
  host: string,
  port: number,
  options: AuthorizationServiceOptions,
  maxCheckRequestBytes: number,
): Promise<GrpcServer> {
  const definitions = serviceDefinitions();
  const server = new grpc.Server({
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_receive_message_length': maxCheckRequestBytes,
    // Channelz (per-call counters and timestamps for a debugging service we do
    // not expose) costs about 2% of a cached Check.
    'grpc.enable_channelz': 0,
  });
  const health = new HealthState(ServingStatus.NOT_SERVING);
  server.addService(definitions.authorization, authorizationHandlers(options));
  server.addService(definitions.health, healthHandlers(health));

  const boundPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });
  health.setAll(ServingStatus.SERVING);

  let closing: Promise<void> | undefined;
  return {
    port: boundPort,
    health,
    shutdown(timeoutMs: number): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        health.setAll(ServingStatus.NOT_SERVING);
        health.endStreams();
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return closing;
    },
  };
}
