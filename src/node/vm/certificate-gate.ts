// The hypervisor's view of a guest's `ready`, held until its host certificate is in place.
// The config goes to the guest at once, so sshd starts while the launch is attested; the
// certificate arrives later and the guest renames it into place (sshd loads it for every
// connection, docs/guest-image.md). Until then sshd presents the bare key, and a user who
// trusts only the CA's @cert-authority line would be refused — so the `ready` that makes
// dom0 report the VM running (and the manager tell the user) is passed on only with the
// guest's `certificate-installed`, or `waitMs` after it came when none follows (a launch
// the CA did not affirm). `waitMs` 0 passes it at once (the node's attestation is off).
import type { VmChannelEndpoint, VmChannelMessage } from '../hypervisor/index.js';
import type { GuestTimeline } from './timeline.js';

export interface GatedEndpoint extends VmChannelEndpoint {
  /** Stops the timer (the VM stops); a held `ready` is dropped. */
  dispose(): void;
}

/**
 * Wraps the guest end of the hypervisor's channel pair: messages from the guest pass in
 * order, but `ready` waits for `certificate-installed` (at most `waitMs`). Notes
 * `ready-reported` and the hypervisor's messages to the guest in `timeline`.
 */
export function gateReadyOnCertificate(endpoint: VmChannelEndpoint, waitMs: number, timeline: GuestTimeline): GatedEndpoint {
  let held: VmChannelMessage | undefined;
  let installed = waitMs <= 0;
  let timer: NodeJS.Timeout | undefined;
  const pass = (m: VmChannelMessage): void => {
    if (m.type === 'ready') timeline.note('ready-reported');
    endpoint.send(m);
  };
  const release = (): void => {
    clearTimeout(timer);
    installed = true;
    const m = held;
    held = undefined;
    if (m !== undefined) pass(m);
  };
  return {
    send(m: VmChannelMessage): void {
      if (m.type === 'ready' && !installed && held === undefined) {
        held = m;
        timer = setTimeout(release, waitMs);
        return;
      }
      if (m.type === 'certificate-installed') release();
      pass(m);
    },
    onMessage(listener: (message: unknown) => void): () => void {
      return endpoint.onMessage((message) => {
        const m = message as Partial<VmChannelMessage> | null;
        if (typeof m === 'object' && m !== null && typeof m.type === 'string') timeline.sent(m as VmChannelMessage);
        listener(message);
      });
    },
    close: () => endpoint.close(),
    get closed() {
      return endpoint.closed;
    },
    dispose(): void {
      clearTimeout(timer);
      held = undefined;
    },
  };
}
