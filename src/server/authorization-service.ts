/**
 * envoy.service.auth.v3.Authorization/Check. Every call is answered with an OK
 * RPC carrying a decision, before Envoy's deadline; an internal failure is a
 * deny, never a failed RPC (which Envoy may turn into "allow" when configured
 * with failure_mode_allow).
 */
import type * as grpc from '@grpc/grpc-js';
import type { DecisionNote } from '../decide.js';
import type { Decision } from '../decision.js';
import { toAuthRequest } from '../envoy/request.js';
import { renderCheckResponse } from '../envoy/response.js';
import type { CheckRequest, CheckResponse } from '../envoy/protos.js';
import type { Logger } from '../observability/logger.js';
import type { Authorizer } from '../authorizer.js';
import type { Config } from '../config/load.js';
import type { Metrics } from '../observability/metrics.js';

/**
 * Time kept back from Envoy's deadline to encode and send the answer, and to
 * absorb transit and event-loop lag: an answer that arrives after Envoy's own
 * timer is an error to Envoy (fail open with failure_mode_allow). A fifth of
 * the time left, at most DEADLINE_MARGIN_MS, so short deadlines keep most of theirs.
 */
const DEADLINE_MARGIN_MS = 50;

const INTERNAL_ERROR: Decision = Object.freeze({
  allow: false,
  reason: 'policy_error',
  policy: null,
  status: 500,
  challenge: null,
  bearerError: null,
  description: 'the request could not be authorized',
  endpoint: null,
  cache: 'none',
});

/** What a Check needs from the configuration in force; swapped whole by a reload. */
export interface Runtime {
  readonly authorizer: Authorizer;
  readonly log: Config['log'];
}

export interface AuthorizationServiceOptions {
  /** The runtime in force; a function so a configuration reload can swap it. */
  runtime: () => Runtime;
  logger: Logger;
  metrics?: Metrics;
}

export function authorizationHandlers(options: AuthorizationServiceOptions): grpc.UntypedServiceImplementation {
  const { logger, metrics } = options;

  const check: grpc.handleUnaryCall<CheckRequest, CheckResponse> = (call, callback) => {
    const started = performance.now();
    const controller = new AbortController();
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    let timer: NodeJS.Timeout | undefined;
    if (Number.isFinite(deadlineMs)) {
      const remaining = deadlineMs - Date.now();
      const budget = Math.max(0, remaining - Math.min(DEADLINE_MARGIN_MS, remaining / 5));
      timer = setTimeout(() => controller.abort(), budget);
    }
    const onCancel = () => controller.abort();
    call.on('cancelled', onCancel);

    const note: DecisionNote = {};
    let requestId: string | null = null;
    let pending: Promise<Decision>;
    const runtime = options.runtime();
    try {
      const request = toAuthRequest(call.request);
      requestId = request.requestId;
      pending = runtime.authorizer.check(request, controller.signal, note);
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending
      .catch((error: unknown) => {
        logger.error({ err: describe(error), requestId }, 'check failed; denying');
        return INTERNAL_ERROR;
      })
      .then((decision) => {
        if (timer) clearTimeout(timer);
        call.removeListener('cancelled', onCancel);
        callback(null, renderCheckResponse(decision));
        const ms = performance.now() - started;
        metrics?.recordDecision(decision, ms / 1000);
        logDecision(logger, runtime.log, decision, requestId, note, ms);
      })
      .catch((error: unknown) => {
        logger.error({ err: describe(error), requestId }, 'could not send the check response');
      });
  };

  return { Check: check };
}

/**
 * One line per decision, as configured: every decision, denies only, or none;
 * allows sampled by allowSampleRate. The check for whether a line is wanted
 * comes first, so a sampled-out decision costs no logging work.
 */
function logDecision(
  logger: Logger,
  settings: Config['log'],
  decision: Decision,
  requestId: string | null,
  note: DecisionNote,
  ms: number,
): void {
  if (settings.decisions === 'none' || !logger.isLevelEnabled('info')) return;
  if (decision.allow) {
    if (settings.decisions === 'deny') return;
    if (settings.allowSampleRate < 1 && Math.random() >= settings.allowSampleRate) return;
  }
  logger.info(
    {
      requestId,
      policy: decision.policy,
      decision: decision.allow ? 'allow' : 'deny',
      reason: decision.reason,
      status: decision.allow ? 200 : decision.status,
      endpoint: decision.endpoint,
      cache: decision.cache,
      identity: settings.identity && decision.allow ? decision.identity : undefined,
      detail: note.detail,
      ms: Math.round(ms * 1000) / 1000,
    },
    'decision',
  );
}

/** Name and message of an error, never its full object (which may hold request data). */
function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : 'unknown error';
}
