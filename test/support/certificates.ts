/**
 * A throwaway private PKI for TLS tests: a CA, a server certificate for
 * 127.0.0.1 / localhost, a server certificate for another name, and a client
 * certificate, all signed by that CA; plus a second, unrelated CA.
 * node:crypto cannot sign X.509 certificates, so this uses the openssl command
 * line (Debian package openssl, a dependency of ca-certificates). EC P-256
 * keys: generated in milliseconds.
 *
 * No test-framework imports here.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (unencrypted PKCS#8). */
  key: string;
}

export interface TestPki {
  /** The CA certificate (PEM) that signed `server` and `client`. */
  ca: string;
  /** For 127.0.0.1 and localhost, extendedKeyUsage serverAuth. */
  server: KeyPair;
  /**
   * Signed by the CA but for idp.example.com only (no IP address, not
   * localhost): served on loopback, a host name mismatch.
   */
  misnamed: KeyPair;
  /** CN=authz-client, extendedKeyUsage clientAuth. */
  client: KeyPair;
  /** Another CA, which signed nothing here. */
  otherCa: string;
  /** A certificate for 127.0.0.1 signed by otherCa. */
  otherServer: KeyPair;
}

/** Whether the openssl command is there; tests that need it say why they cannot run without it. */
export function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'authz-pki-'));
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const read = (name: string) => readFileSync(file(name), 'utf8');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

  const makeCa = (name: string) => {
    openssl('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  };
  const makeLeaf = (name: string, ca: string, cn: string, extensions: string[]): KeyPair => {
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    writeFileSync(file(`${name}.ext`), `${extensions.join('\n')}\n`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`,
      '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
    return { cert: read(`${name}.crt`), key: read(`${name}.key`) };
  };

  try {
    makeCa('test-ca');
    makeCa('other-ca');
    const serverExtensions = ['basicConstraints=CA:FALSE', 'subjectAltName=IP:127.0.0.1,DNS:localhost', 'extendedKeyUsage=serverAuth'];
    return {
      ca: read('test-ca.crt'),
      server: makeLeaf('server', 'test-ca', 'localhost', serverExtensions),
      misnamed: makeLeaf('misnamed', 'test-ca', 'idp.example.com',
        ['basicConstraints=CA:FALSE', 'subjectAltName=DNS:idp.example.com', 'extendedKeyUsage=serverAuth']),
      client: makeLeaf('client', 'test-ca', 'authz-client', ['basicConstraints=CA:FALSE', 'extendedKeyUsage=clientAuth']),
      otherCa: read('other-ca.crt'),
      otherServer: makeLeaf('other-server', 'other-ca', 'localhost', serverExtensions),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
