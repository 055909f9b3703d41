"""The LLM stage: a bundle's tokens in a Hugging Face causal LM.

    mmtok.lm.layout    the extended vocabulary's id ranges and structural tokens (torch-free)
    mmtok.lm.extend    `extend(llm, bundles, out)`: add the tokens, resize the embeddings, write the layout
    mmtok.lm.tokens    token shards: `tokenize(bundle, data, out)` and reading them back (inputs: mmtok.lm.captioned)
    mmtok.lm.train     `train(recipe, out)`: caption <-> image sequences, packed, Lightning
    mmtok.lm.generate  `generate_images(...)` with classifier-free guidance, `caption_images(...)`
"""
