/**
 * A failure the operator shows on a product's status: a CamelCase reason and a message a user
 * (or the platform's operator) can act on. `terminal` means only a change of the spec can fix it,
 * so the reconciler shows it and does not retry; otherwise it retries with backoff.
 */
export class ProvisioningError extends Error {
  readonly reason: string;
  readonly terminal: boolean;

  constructor(reason: string, message: string, opts: { terminal?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ProvisioningError';
    this.reason = reason;
    this.terminal = opts.terminal ?? false;
  }
}
