/**
 * grpc.health.v1.Health: Check and Watch over a small status table. The
 * overall service ("") and the Authorization service share one status.
 */
import * as grpc from '@grpc/grpc-js';

export const ServingStatus = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;
export type ServingStatus = (typeof ServingStatus)[keyof typeof ServingStatus];

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';

interface HealthRequest {
  service?: string;
}
interface HealthResponse {
  status: number;
}

type Listener = (status: ServingStatus) => void;

/** An open Watch stream, as far as shutdown is concerned. */
interface Stream {
  end(): void;
}

export class HealthState {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #listeners = new Set<Listener>();
  readonly #streams = new Set<Stream>();

  constructor(initial: ServingStatus = ServingStatus.NOT_SERVING) {
    this.#statuses.set('', initial);
    this.#statuses.set(AUTHORIZATION_SERVICE, initial);
  }

  /** Set every known service's status, telling watchers of a change. */
  setAll(status: ServingStatus): void {
    const changed = this.#statuses.get('') !== status;
    for (const service of this.#statuses.keys()) this.#statuses.set(service, status);
    if (changed) for (const listener of this.#listeners) listener(status);
  }

  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Remember a Watch stream until it closes, so endStreams() can finish it. */
  track(stream: Stream): () => void {
    this.#streams.add(stream);
    return () => this.#streams.delete(stream);
  }

  /**
   * Finish every Watch stream (after they were told NOT_SERVING): an open Watch
   * never ends by itself and would hold a graceful shutdown to its deadline.
   */
  endStreams(): void {
    for (const stream of this.#streams) stream.end();
    this.#streams.clear();
  }
}

export function healthHandlers(state: HealthState): grpc.UntypedServiceImplementation {
  const check: grpc.handleUnaryCall<HealthRequest, HealthResponse> = (call, callback) => {
    const status = state.get(call.request.service ?? '');
    if (status === undefined) {
      callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      return;
    }
    callback(null, { status });
  };

  const watch: grpc.handleServerStreamingCall<HealthRequest, HealthResponse> = (call) => {
    const service = call.request.service ?? '';
    const initial = state.get(service);
    call.write({ status: initial ?? ServingStatus.SERVICE_UNKNOWN });
    // An unknown service's stream stays open (the spec allows it to appear later) until shutdown.
    const unsubscribe = initial === undefined ? () => false : state.subscribe((status) => call.write({ status }));
    const untrack = state.track(call);
    const forget = () => {
      unsubscribe();
      untrack();
    };
    call.on('cancelled', forget);
    call.on('close', forget);
    call.on('finish', forget);
  };

  return { Check: check, Watch: watch };
}
