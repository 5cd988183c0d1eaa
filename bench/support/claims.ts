/** The introspection answer the bench's authorization server gives for an active token. */
import { createHash } from 'node:crypto';

/** The members a typical authorization server (WSO2, Keycloak, ISVA) returns for an access token. */
export function activeClaims(token: string): Record<string, unknown> {
  const digest = createHash('sha256').update(token).digest();
  const now = Math.floor(Date.now() / 1000);
  return {
    active: true,
    scope: 'openid profile orders:read orders:write',
    client_id: 'web-portal',
    username: `jdoe.${digest.toString('hex', 0, 4)}@example.com`,
    token_type: 'Bearer',
    exp: now + 3600,
    iat: now - 60,
    nbf: now - 60,
    sub: `user-${digest.toString('hex', 4, 12)}`,
    aud: 'https://api.example.com',
    iss: 'https://idp.example.com/oauth2',
    jti: digest.toString('base64url', 12, 28),
  };
}
