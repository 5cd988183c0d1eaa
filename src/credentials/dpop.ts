/**
 * DPoP proofs (RFC 9449 sections 4.2, 4.3 and 7): the `DPoP` header taken
 * from a request, and a proof verified against the request it came with.
 * Every JWS and JWK operation is jose's; what is ours is the reading of the
 * RFC's rules. Pure given the clock: the replay check (jti) is the caller's,
 * once it knows the proof's key is the one the token is bound to.
 */
import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, importJWK, type CryptoKey, type JWK, type ProtectedHeaderParameters } from 'jose';

/** Asymmetric JWS algorithms a policy may accept (RFC 9449 section 4.2: never none, never a MAC). */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA', 'Ed25519'] as const;
export type DpopAlgorithm = (typeof DPOP_ALGORITHMS)[number];

export type ProofHeader =
  | { kind: 'proof'; proof: string }
  | { kind: 'missing' }
  | { kind: 'invalid'; description: string };

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * The request's one DPoP proof (section 7.1: exactly one `DPoP` header).
 * @param values every DPoP header value as it arrived (Envoy joins repeated lines with ",")
 */
export function extractProof(values: readonly string[], maxLength: number): ProofHeader {
  if (values.length === 0) return { kind: 'missing' };
  if (values.length > 1) return { kind: 'invalid', description: 'more than one DPoP header' };
  const proof = values[0]!.trim();
  if (proof === '') return { kind: 'missing' };
  if (proof.length > maxLength) return { kind: 'invalid', description: `the DPoP proof is longer than ${maxLength} characters` };
  if (!COMPACT_JWS.test(proof)) {
    return { kind: 'invalid', description: proof.includes(',') ? 'more than one DPoP proof' : 'the DPoP proof is not a compact JWS' };
  }
  return { kind: 'proof', proof };
}

/** What the proof must match, from the request itself. */
export interface ProofTarget {
  /** The HTTP method as the proxy received it. */
  readonly method: string;
  /** http or https. */
  readonly scheme: string;
  readonly host: string;
  /** The path, query included (Envoy sends it so); the query is not part of htu. */
  readonly path: string;
  /** The access token of the Authorization header. */
  readonly token: string;
}

export interface ProofRules {
  readonly algorithms: readonly string[];
  /** Seconds iat may lie before or after our clock. */
  readonly windowSeconds: number;
}

export interface VerifiedProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's key, to compare with cnf.jkt. */
  readonly thumbprint: string;
  readonly jti: string;
  /** The proof's nonce claim, when it has one (checked by the caller against its DpopNonces). */
  readonly nonce: string | null;
  /** Epoch ms after which this proof would be refused as stale anyway: how long its jti must be remembered. */
  readonly acceptableUntil: number;
}

export type ProofCheck = { ok: true; proof: VerifiedProof } | { ok: false; description: string };

export interface DpopVerifierOptions {
  clock?: { now(): number };
  /** Most imported public keys kept, by algorithm and thumbprint. */
  keyCacheEntries?: number;
}

/** Members that only a private or symmetric JWK has (RFC 7518 section 6). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
const KEY_TYPES = new Set(['EC', 'RSA', 'OKP']);
/** Longest jti taken: it becomes a replay-store key, and RFC 9449 asks only for enough randomness. */
const MAX_JTI_LENGTH = 256;

const BAD_SIGNATURE = 'the DPoP proof signature is not valid';
/** jose's stable error codes (it checks the algorithm and the JWS shape before asking for the key). */
const JOSE_PROBLEMS: Readonly<Record<string, string>> = {
  ERR_JOSE_ALG_NOT_ALLOWED: 'the DPoP proof uses an algorithm not allowed here',
  ERR_JWS_INVALID: 'the DPoP proof is not a valid JWS',
  ERR_JOSE_NOT_SUPPORTED: 'the DPoP proof uses an unsupported algorithm or key',
};

/** Thrown from jose's key callback: our fixed sentence, carried out of compactVerify. */
class ProofProblem extends Error {}

/**
 * Verifies proofs with a bounded cache of imported keys: a client signs every
 * request with the same key, and importing it is most of a verification's
 * cost after the signature itself.
 */
export class DpopVerifier {
  readonly #clock: { now(): number };
  readonly #keys = new Map<string, { key: CryptoKey; thumbprint: string }>();
  readonly #maxKeys: number;

  constructor(options: DpopVerifierOptions = {}) {
    this.#clock = options.clock ?? Date;
    this.#maxKeys = options.keyCacheEntries ?? 1000;
  }

  async verify(proof: string, target: ProofTarget, rules: ProofRules): Promise<ProofCheck> {
    const htu = requestHtu(target);
    if (htu === null) return refuse('the request URI cannot be determined');
    let thumbprint = '';
    let payload: Uint8Array;
    try {
      const verified = await compactVerify(
        proof,
        async (header) => {
          const { key, thumbprint: print } = await this.#keyOf(header, rules);
          thumbprint = print;
          return key;
        },
        { algorithms: [...rules.algorithms] },
      );
      payload = verified.payload;
    } catch (error) {
      return refuse(error instanceof ProofProblem ? error.message : (JOSE_PROBLEMS[(error as { code?: string }).code ?? ''] ?? BAD_SIGNATURE));
    }

    let claims: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(Buffer.from(payload).toString('utf8'));
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return refuse('the DPoP proof payload is not a JSON object');
      claims = parsed as Record<string, unknown>;
    } catch {
      return refuse('the DPoP proof payload is not JSON');
    }

    const { jti, htm, htu: claimedHtu, iat, ath, nonce } = claims;
    if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) return refuse('the DPoP proof has no usable jti');
    if (htm !== target.method) return refuse('the DPoP proof is for another HTTP method');
    if (typeof claimedHtu !== 'string' || normalizeHtu(claimedHtu) !== htu) return refuse('the DPoP proof is for another URI');
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return refuse('the DPoP proof has no iat');
    const now = this.#clock.now();
    const windowMs = rules.windowSeconds * 1000;
    if (iat * 1000 > now + windowMs) return refuse('the DPoP proof is issued in the future');
    if (iat * 1000 < now - windowMs) return refuse('the DPoP proof is too old');
    if (typeof ath !== 'string') return refuse('the DPoP proof has no ath');
    if (ath !== accessTokenHash(target.token)) return refuse('the DPoP proof is for another access token');
    if (nonce !== undefined && typeof nonce !== 'string') return refuse('the DPoP proof nonce is not a string');
    return { ok: true, proof: { thumbprint, jti, nonce: nonce ?? null, acceptableUntil: iat * 1000 + windowMs } };
  }

  /** The proof's embedded public key, imported once per algorithm and key. */
  async #keyOf(header: ProtectedHeaderParameters, rules: ProofRules): Promise<{ key: CryptoKey; thumbprint: string }> {
    if (header.typ !== 'dpop+jwt') throw new ProofProblem('the DPoP proof is not of type dpop+jwt');
    const alg = header.alg;
    if (typeof alg !== 'string' || !rules.algorithms.includes(alg)) throw new ProofProblem('the DPoP proof uses an algorithm not allowed here');
    const jwk = header.jwk as JWK | undefined;
    if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) throw new ProofProblem('the DPoP proof carries no jwk');
    if (PRIVATE_MEMBERS.some((member) => Object.hasOwn(jwk, member))) throw new ProofProblem('the DPoP proof jwk is not a public key');
    if (typeof jwk.kty !== 'string' || !KEY_TYPES.has(jwk.kty)) throw new ProofProblem('the DPoP proof jwk is not an asymmetric key');
    // The members RFC 7638 hashes make the key: equal members, same key, same thumbprint. Keyed by
    // them, a repeated key costs neither a digest nor an import.
    const members = [jwk.kty, jwk.crv, jwk.x, jwk.y, jwk.n, jwk.e];
    if (members.some((member) => member !== undefined && typeof member !== 'string')) throw new ProofProblem('the DPoP proof jwk is not a valid key');
    const id = `${alg} ${members.map((member) => member ?? '').join(' ')}`;
    let known = this.#keys.get(id);
    if (known === undefined) {
      let thumbprint: string;
      let key: CryptoKey;
      try {
        thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
      } catch {
        throw new ProofProblem('the DPoP proof jwk is not a valid key');
      }
      try {
        const imported = await importJWK(jwk, alg);
        if (imported instanceof Uint8Array || imported.type !== 'public') throw new Error('not a public key');
        key = imported;
      } catch {
        throw new ProofProblem('the DPoP proof jwk is not a valid key for its algorithm');
      }
      known = { key, thumbprint };
      if (this.#keys.size >= this.#maxKeys) this.#keys.delete(this.#keys.keys().next().value!);
      this.#keys.set(id, known);
    }
    return known;
  }
}

function refuse(description: string): ProofCheck {
  return { ok: false, description };
}

/** RFC 9449 section 4.2 ath: base64url of the SHA-256 of the token's ASCII. */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/**
 * The htu a proof for this request must carry, normalised as section 4.3
 * asks (RFC 3986 section 6: scheme and host case, default port, dot
 * segments), without query and fragment; null when the request gives no
 * usable scheme, host or path.
 */
export function requestHtu({ scheme, host, path }: ProofTarget): string | null {
  if ((scheme !== 'http' && scheme !== 'https') || host === '' || !path.startsWith('/')) return null;
  const cut = path.search(/[?#]/);
  return normalizeHtu(`${scheme}://${host}${cut < 0 ? path : path.slice(0, cut)}`);
}

function normalizeHtu(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '') return null;
  return `${url.protocol}//${url.host}${url.pathname}`;
}
