"""Judge prompts: an impartial pairwise comparison (MT-Bench style, strict final verdict token), a
reference-guided variant for math and reasoning when the request carries a reference answer, and a
single-answer 1-10 rating. Per-category overrides come from the config."""

from __future__ import annotations

SYSTEM_PAIRWISE = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. Choose the assistant that follows the user's "
    "instructions and answers the user's question better, considering helpfulness, relevance, accuracy, "
    "depth and level of detail. Avoid any position bias: the order in which the responses are presented "
    "must not influence your decision. Do not let response length or the assistants' names influence you. "
    "Be as objective as possible. Begin with a short explanation, then output your final verdict by "
    "strictly following this format: \"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is "
    "better, and \"[[C]]\" for a tie."
)

SYSTEM_PAIRWISE_REFERENCE = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. Your evaluation should consider correctness and "
    "helpfulness. You will be given a reference answer, assistant A's answer and assistant B's answer. "
    "Identify and correct any mistakes by comparing both answers with the reference. Avoid any position "
    "bias and do not let response length influence you. Begin with a short explanation, then output your "
    "final verdict by strictly following this format: \"[[A]]\" if assistant A is better, \"[[B]]\" if "
    "assistant B is better, and \"[[C]]\" for a tie."
)

SYSTEM_SINGLE = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below, considering helpfulness, relevance, accuracy, depth "
    "and level of detail. Begin with a short explanation, then rate the response on a scale of 1 to 10 by "
    "strictly following this format: \"[[rating]]\", for example: \"Rating: [[5]]\"."
)

REFERENCE_CATEGORIES = frozenset({"math", "reasoning"})


def pairwise_messages(question: str, answer_a: str, answer_b: str, reference: str | None = None,
                      category: str = "", override: str | None = None) -> list[dict[str, str]]:
    use_reference = reference is not None and category in REFERENCE_CATEGORIES
    system = override or (SYSTEM_PAIRWISE_REFERENCE if use_reference else SYSTEM_PAIRWISE)
    ref = f"[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n" if use_reference else ""
    user = (f"[User Question]\n{question}\n\n{ref}"
            f"[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
            f"[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def single_messages(question: str, answer: str) -> list[dict[str, str]]:
    user = (f"[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n"
            f"[The End of Assistant's Answer]")
    return [{"role": "system", "content": SYSTEM_SINGLE}, {"role": "user", "content": user}]


def question_text(messages: list[dict[str, object]] | None, prompt: object) -> str:
    """The conversation as the judge reads it (earlier turns included)."""
    if messages is None:
        return prompt if isinstance(prompt, str) else str(prompt)
    lines = []
    for m in messages:
        content = m.get("content")
        text = content if isinstance(content, str) else str(content)
        lines.append(f"{m.get('role', 'user')}: {text}" if len(messages) > 1 else text)
    return "\n".join(lines)
