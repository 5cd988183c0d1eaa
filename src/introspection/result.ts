/**
 * What an introspection call can come to, and the pure RFC 7662 reading of an
 * HTTP answer into one of those outcomes.
 */

/** Claims of an active token: a null-prototype object, so no key can reach Object.prototype. */
export type Claims = Readonly<Record<string, unknown>>;

export type Outcome = 'active' | 'inactive' | 'error' | 'timeout' | 'bad_response';

export type IntrospectionResult =
  | { outcome: 'active'; claims: Claims; /** token expiry in epoch ms, if the answer gave one */ expiresAt: number | null }
  | { outcome: 'inactive' }
  /** error: could not reach the endpoint; timeout: no answer in time; bad_response: not an RFC 7662 answer. */
  | { outcome: 'error' | 'timeout' | 'bad_response'; detail: string };

export const INACTIVE: IntrospectionResult = Object.freeze({ outcome: 'inactive' });

export interface ReadOptions {
  /** Current time, epoch ms. */
  now: number;
  /** Seconds of tolerated clock difference for exp and nbf. */
  clockSkew: number;
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
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return bad('the answer is not a JSON object');
  const answer = parsed as Record<string, unknown>;
  if (typeof answer.active !== 'boolean') return bad('"active" is missing or not a boolean');
  if (!answer.active) return INACTIVE;

  for (const name of ['exp', 'nbf', 'iat'] as const) {
    const value = answer[name];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      return bad(`"${name}" is not a number`);
    }
  }
  const skewMs = options.clockSkew * 1000;
  const exp = answer.exp as number | undefined;
  const nbf = answer.nbf as number | undefined;
  if (exp !== undefined && exp * 1000 + skewMs <= options.now) return INACTIVE;
  if (nbf !== undefined && nbf * 1000 - skewMs > options.now) return INACTIVE;

  const claims: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(answer)) claims[key] = deepFreeze(answer[key]);
  return { outcome: 'active', claims: Object.freeze(claims), expiresAt: exp === undefined ? null : exp * 1000 };
}

function bad(detail: string): IntrospectionResult {
  return { outcome: 'bad_response', detail };
}

/** Cached claims are shared by every later Check: nothing may change them. Iterative: nesting may be deep. */
function deepFreeze(root: unknown): unknown {
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const value = pending.pop();
    if (value === null || typeof value !== 'object' || Object.isFrozen(value)) continue;
    Object.freeze(value);
    for (const key of Object.keys(value)) pending.push((value as Record<string, unknown>)[key]);
  }
  return root;
}
