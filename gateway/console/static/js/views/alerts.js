// New-order alerts: a short beep made with WebAudio (no sound file). Browsers let a page make sound only after a
// user gesture, so alerts stay off until staff click "开启提醒 Enable alerts"; once on, they stay on for the tab
// (this module lives as long as the page), whichever view is shown.

let audio = null;

export function alertsOn() {
  return audio !== null && audio.state === "running";
}

// Call from a click handler: the gesture is what lets the context run.
export async function enableAlerts() {
  audio ??= new AudioContext();
  await audio.resume();
  return alertsOn();
}

// Two short tones; counted on `window.songdaAlertsPlayed` (what a test, or a curious operator, can read).
export function beep() {
  if (!alertsOn()) return false;
  const start = audio.currentTime;
  for (const [offset, pitch] of [
    [0, 880],
    [0.25, 1175],
  ]) {
    const tone = audio.createOscillator();
    const volume = audio.createGain();
    tone.frequency.value = pitch;
    volume.gain.setValueAtTime(0.25, start + offset);
    volume.gain.exponentialRampToValueAtTime(0.001, start + offset + 0.2);
    tone.connect(volume).connect(audio.destination);
    tone.start(start + offset);
    tone.stop(start + offset + 0.2);
  }
  window.songdaAlertsPlayed = (window.songdaAlertsPlayed || 0) + 1;
  return true;
}
