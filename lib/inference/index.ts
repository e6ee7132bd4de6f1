// inference: sessions that run a model's forward off the main thread, sharing its weights.
export { session, InferenceSession, type SessionOptions, type Prediction, type ImageInput, type Explanation } from './session.ts';
export { registerModuleClass, type ModuleClass } from './session-classes.ts';
