// The mini-domain's entry point, called by the hypervisor once the launch gate passed
// (MiniDomainEntry). The loader first checks that the measured image — the bytes the gate
// hashed, read back from the domain's memory — is exactly the agent code this process
// runs; only then does the agent start. A refusal here makes the gate destroy the domain
// before it ever touches the device.
import type { MiniDomainEntry } from '../hypervisor/index.js';
import { MiniDomainAgent, type AgentSettings } from './agent.js';
import { checkMeasuredImage } from './image.js';

/** The entry hook for `bootHypervisor({ miniDomain })`; settings are read again at every launch. */
export function miniDomainEntry(settings: AgentSettings | (() => AgentSettings)): MiniDomainEntry {
  return ({ capability, image }) => {
    checkMeasuredImage(image);
    const agent = MiniDomainAgent.start(capability, typeof settings === 'function' ? settings() : settings);
    return { stop: () => agent.stop(), exited: agent.exited };
  };
}
