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

export class HealthState {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #listeners = new Set<Listener>();

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
    if (initial === undefined) return;
    const unsubscribe = state.subscribe((status) => call.write({ status }));
    call.on('cancelled', unsubscribe);
    call.on('close', unsubscribe);
  };

  return { Check: check, Watch: watch };
}
