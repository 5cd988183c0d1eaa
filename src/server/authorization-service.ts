/**
 * envoy.service.auth.v3.Authorization/Check. Every call is answered with an OK
 * RPC carrying a decision, before Envoy's deadline; an internal failure is a
 * deny, never a failed RPC (which Envoy may turn into "allow" when configured
 * with failure_mode_allow).
 */
import type * as grpc from '@grpc/grpc-js';
import type { DecisionNote } from '../decide.js';
import type { Decision } from '../decision.js';
import { encodeCheckResponse } from '../envoy/response.js';
import { CheckDeadline } from './check-deadline.js';
import { UNDECODABLE, type CheckInput } from '../envoy/protos.js';
import type { Logger } from '../observability/logger.js';
import type { Authorizer } from '../authorizer.js';
import type { Config } from '../config/load.js';
import type { Metrics } from '../observability/metrics.js';
import type { Tracing } from '../observability/tracing.js';

/** The answer when deciding failed in a way the pipeline did not foresee: a deny, on every edge. */
export const INTERNAL_ERROR: Decision = Object.freeze({
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

const INTERNAL_ERROR_RESPONSE = encodeCheckResponse(INTERNAL_ERROR);

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
  /** undefined: tracing is off (one check per Check, nothing else). */
  tracing?: Tracing;
}

export function authorizationHandlers(options: AuthorizationServiceOptions): grpc.UntypedServiceImplementation {
  const { logger, metrics, tracing } = options;

  const check: grpc.handleUnaryCall<CheckInput, Buffer> = (call, callback) => {
    const started = performance.now();
    const deadline = new CheckDeadline(call);
    const note: DecisionNote = {};
    let requestId: string | null = null;
    let pending: Promise<Decision>;
    const runtime = options.runtime();
    const request = call.request;
    const trace = tracing?.check(call.metadata, request === UNDECODABLE ? undefined : request.headers);
    if (request === UNDECODABLE) {
      pending = Promise.reject(new Error('the CheckRequest could not be decoded'));
    } else {
      requestId = request.requestId;
      try {
        pending = runtime.authorizer.check(request, deadline, note, trace);
      } catch (error) {
        pending = Promise.reject(error);
      }
    }
    const answer = (decided: Decision) => {
      deadline.dispose();
      let decision = decided;
      let bytes: Buffer;
      try {
        bytes = encodeCheckResponse(decision);
      } catch (error) {
        logger.error({ err: describe(error), requestId }, 'could not encode the decision; denying');
        decision = INTERNAL_ERROR;
        bytes = INTERNAL_ERROR_RESPONSE;
      }
      try {
        callback(null, bytes);
        const ms = performance.now() - started;
        metrics?.recordDecision(decision, ms / 1000, 'grpc', trace?.traceId);
        logDecision(logger, runtime.log, decision, requestId, note, ms);
      } catch (error) {
        logger.error({ err: describe(error), requestId }, 'could not send the check response');
      }
      trace?.end(decision);
    };
    pending
      .then(answer, (error: unknown) => {
        // Answered first: Envoy must get its deny even if the log line cannot be written.
        answer(INTERNAL_ERROR);
        logger.error({ err: describe(error), requestId }, 'check failed; denying');
      })
      // Last resort: a rejection left here would be an uncaught error that ends the process and every Check in it.
      .catch(() => {});
  };

  return { Check: check };
}

/**
 * One line per decision, as configured: every decision, denies only, or none;
 * allows sampled by allowSampleRate. The check for whether a line is wanted
 * comes first, so a sampled-out decision costs no logging work.
 */
export function logDecision(
  logger: Logger,
  settings: Config['log'],
  decision: Decision,
  requestId: string | null,
  note: DecisionNote,
  ms: number,
): void {
  if (settings.decisions === 'none' || !logger.isLevelEnabled('info')) return;
  // A would-be deny is logged as a deny is: a dry run is there to show them all.
  const wouldDeny = decision.allow ? decision.wouldDeny : undefined;
  if (decision.allow && wouldDeny === undefined) {
    if (settings.decisions === 'deny') return;
    if (settings.allowSampleRate < 1 && Math.random() >= settings.allowSampleRate) return;
  }
  logger.info(
    {
      requestId,
      policy: decision.policy,
      decision: wouldDeny ? 'would_deny' : decision.allow ? 'allow' : 'deny',
      reason: wouldDeny?.reason ?? decision.reason,
      status: decision.allow ? 200 : decision.status,
      wouldDenyStatus: wouldDeny?.status,
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
export function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : 'unknown error';
}
