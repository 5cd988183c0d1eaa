/**
 * What an introspection call can come to, and the pure RFC 7662 reading of an
 * HTTP answer into one of those outcomes.
 */

/** Claims of an active token: a null-prototype object, so no key can reach Object.prototype. */
export type Claims = Readonly<Record<string, unknown>>;

export type Outcome = 'active' | 'inactive' | 'error' | 'timeout' | 'bad_response' | 'circuit_open';

export type IntrospectionResult =
  | { outcome: 'active'; claims: Claims; /** token expiry in epoch ms, if the answer gave one */ expiresAt: number | null }
  /**
   * validFrom: set when the token is inactive only because its nbf or iat is
   * ahead of our clock (epoch ms at which that stops being so): the answer
   * changes then, so it must not be cached past it.
   */
  | { outcome: 'inactive'; validFrom?: number }
  /**
   * error: could not reach the endpoint; timeout: no answer in time; bad_response:
   * not an RFC 7662 answer; circuit_open: not asked, the endpoint failed too often lately.
   */
  | { outcome: 'error' | 'timeout' | 'bad_response' | 'circuit_open'; detail: string };

export const INACTIVE: IntrospectionResult = Object.freeze({ outcome: 'inactive' });

/** Deepest nesting of an answer taken (the answer object is level 1); a deeper one is a bad response. */
export const MAX_ANSWER_DEPTH = 32;

export interface ReadOptions {
  /** Current time, epoch ms. */
  now: number;
  /** Seconds of tolerated clock difference for exp, nbf and iat. */
  clockSkew: number;
  /** The answer's iss must be exactly this; a different or missing one is inactive. */
  issuer?: string | null;
  /** The answer's aud (string or array) must hold at least one of these; [] or absent: not checked. */
  audience?: readonly string[];
  /** Turn a space-separated scope string into an array of scopes (IBM: multi_valued_scope). */
  multiValuedScope?: boolean;
}

/** Interpret an introspection endpoint's HTTP answer (RFC 7662 section 2.2). */
export function readIntrospectionResponse(status: number, body: string, options: ReadOptions): IntrospectionResult {
  if (status < 200 || status > 299) return bad(`the endpoint answered HTTP ${status}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return bad('the answer is not JSON');
  }
  return readIntrospectionAnswer(parsed, options);
}

/**
 * Interpret an RFC 7662 answer object, wherever it came from: a JSON body, or
 * the token_introspection claim of a verified RFC 9701 JWT.
 */
export function readIntrospectionAnswer(parsed: unknown, options: ReadOptions): IntrospectionResult {
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return bad('the answer is not a JSON object');
  const answer = parsed as Record<string, unknown>;
  // Frozen whole here: the claims made below are its values, shared by every later Check.
  if (!deepFreezeWithin(answer, MAX_ANSWER_DEPTH)) return bad(`the answer is nested deeper than ${MAX_ANSWER_DEPTH} levels`);
  if (typeof answer.active !== 'boolean') return bad('"active" is missing or not a boolean');
  if (!answer.active) return INACTIVE;
  return checkedClaims(answer, options);
}

/**
 * The claims of a token some authority calls active (an introspection answer,
 * or a JWT access token whose signature we verified), checked against the
 * clock, issuer and audience, frozen, and shaped for the policy.
 */
export function activeClaims(answer: Record<string, unknown>, options: ReadOptions): IntrospectionResult {
  if (!deepFreezeWithin(answer, MAX_ANSWER_DEPTH)) return bad(`the answer is nested deeper than ${MAX_ANSWER_DEPTH} levels`);
  return checkedClaims(answer, options);
}

function checkedClaims(answer: Record<string, unknown>, options: ReadOptions): IntrospectionResult {

  for (const name of ['exp', 'nbf', 'iat'] as const) {
    const value = answer[name];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      return bad(`"${name}" is not a number`);
    }
  }
  const skewMs = options.clockSkew * 1000;
  const exp = answer.exp as number | undefined;
  if (exp !== undefined && exp * 1000 + skewMs <= options.now) return INACTIVE;
  // A token valid from a moment still ahead of our clock (nbf, or an iat in the
  // future: issued by a clock ahead of ours) is not active yet; it may be soon.
  const notBefore = Math.max((answer.nbf as number | undefined) ?? -Infinity, (answer.iat as number | undefined) ?? -Infinity);
  if (notBefore * 1000 - skewMs > options.now) return { outcome: 'inactive', validFrom: notBefore * 1000 - skewMs };

  if (options.issuer != null && answer.iss !== options.issuer) return INACTIVE;
  if (options.audience && options.audience.length > 0 && !hasAudience(answer.aud, options.audience)) return INACTIVE;

  // No prototype (a claim may be named "__proto__" or "constructor"). Made from
  // {} rather than Object.create(null), which V8 keeps in dictionary mode, and
  // filled before freezing: every answer of the same shape then shares one
  // hidden class, instead of costing each cache entry its own (~1 KB).
  const claims: Record<string, unknown> = Object.setPrototypeOf({}, null);
  for (const key of Object.keys(answer)) {
    const value = answer[key];
    claims[key] = typeof value === 'string' ? sharedValue(value) : value;
  }
  if (options.multiValuedScope && typeof claims.scope === 'string') {
    claims.scope = Object.freeze(claims.scope.split(' ').filter((scope) => scope !== ''));
  }
  return { outcome: 'active', claims: Object.freeze(claims), expiresAt: exp === undefined ? null : exp * 1000 };
}

/**
 * One copy of each short claim value that many answers repeat (iss, aud,
 * scope, client_id): JSON.parse makes a new string per answer, and every
 * cached answer would keep its own. The values come from the authorization
 * server, so the table is bounded: once full it starts over, which costs a
 * hostile server's flood of distinct values nothing but the sharing.
 */
const sharedValues = new Map<string, string>();
const MAX_SHARED_VALUES = 4096;
const MAX_SHARED_VALUE_LENGTH = 256;

function sharedValue(value: string): string {
  if (value.length > MAX_SHARED_VALUE_LENGTH) return value;
  const known = sharedValues.get(value);
  if (known !== undefined) return known;
  if (sharedValues.size >= MAX_SHARED_VALUES) sharedValues.clear();
  sharedValues.set(value, value);
  return value;
}

/** RFC 7662 aud: a string or an array of strings; anything else matches nothing. */
function hasAudience(aud: unknown, wanted: readonly string[]): boolean {
  if (typeof aud === 'string') return wanted.includes(aud);
  return Array.isArray(aud) && aud.some((value) => typeof value === 'string' && wanted.includes(value));
}

function bad(detail: string): IntrospectionResult {
  return { outcome: 'bad_response', detail };
}

/**
 * Freeze every object in the tree; false when it is nested deeper than
 * `levels` (the root is level 1). Iterative: the answer comes from a JSON.parse
 * that has no depth limit, and what we do with claims later (JSON.stringify
 * into the shared tier, templates, metadata) recurses and would overflow the
 * stack on an answer thousands of levels deep.
 */
function deepFreezeWithin(root: object, levels: number): boolean {
  // A parsed JSON value is a tree: nothing is reached twice.
  const pending: object[] = [root];
  const depths: number[] = [1];
  while (pending.length > 0) {
    const value = pending.pop()!;
    const depth = depths.pop()!;
    if (depth > levels) return false;
    Object.freeze(value);
    for (const child of Object.values(value)) {
      if (child === null || typeof child !== 'object') continue;
      pending.push(child);
      depths.push(depth + 1);
    }
  }
  return true;
}
