import base64
from openai import OpenAI

# The key is OPENAI_API_KEY: one of the server's -keys (anything when it has none).
client = OpenAI(base_url="http://127.0.0.1:8080/v1")
result = client.images.generate(
    model="fal-ai/flux-2/klein/4b/base",
    prompt="a red fox in the snow",
    size="512x512",
    response_format="b64_json",
    extra_body={"seed": 42, "num_inference_steps": 4},  # the endpoint's own fields
)
with open("fox.png", "wb") as f:
    f.write(base64.b64decode(result.data[0].b64_json))
print(result.size, result.model_extra["seed"])
