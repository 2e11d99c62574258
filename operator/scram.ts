/**
 * A Postgres SCRAM-SHA-256 password verifier (RFC 5802 / 7677, as Postgres stores it). The
 * operator sends `PASSWORD '<verifier>'` instead of the password itself, so the password never
 * reaches the server's statement log or `pg_stat_activity`.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/** The verifier of `password`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. */
export function scramSha256Verifier(
  password: string,
  iterations = 4096,
  salt: Buffer = randomBytes(16),
): string {
  // The password is ASCII (base64url), so SASLprep leaves it as it is.
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
